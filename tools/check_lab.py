#!/usr/bin/env python3
"""Open a lesson in a real JupyterLab, in headless Chromium, and fail on any error a student would meet there.

Starts `jupyter lab` on loopback (a random token, no browser), opens the notebook, and checks that: the notebook
panel shows it; its first heading and its equations are rendered (MathJax); its kernel starts and goes idle; no
error dialog opens and the page throws no uncaught exception. Saves a screenshot.

    python tools/check_lab.py nbs/70_regressor.ipynb --screenshot artifacts/lab_70.png
"""
import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from check_site import CHROMIUM_ARGS

TIMEOUT_MS = 90_000


def has_math(path: Path) -> bool:
    "Whether a markdown cell of the notebook holds $...$ math (then MathJax must render it)."
    try:
        cells = json.loads(path.read_text()).get("cells", [])
    except (ValueError, UnicodeDecodeError):
        return False  # JupyterLab itself must report the unreadable file
    return any(c.get("cell_type") == "markdown" and "$" in "".join(c.get("source", "")) for c in cells)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: Path, port: int, token: str) -> subprocess.Popen:
    """A JupyterLab server serving `root` on 127.0.0.1:`port`; waits until it answers."""
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
           f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}", "--allow-root",
           "--LabApp.news_url=", "--ServerApp.port_retries=0"]
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"))  # no developer's settings or open tabs
    log = open(root / ".lab.log", "w+")  # a file, not a pipe: a full pipe would stall the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("jupyter lab did not answer within 60 s")


def wait_for(page, selector: str, what: str) -> str | None:
    """Wait until `selector` or an error dialog shows; None when `selector` showed, else what went wrong."""
    try:
        page.wait_for_selector(f"{selector}, .jp-Dialog", timeout=TIMEOUT_MS)
    except Exception:  # playwright's TimeoutError
        return f"{what} did not show within {TIMEOUT_MS // 1000} s"
    return None if page.locator(selector).count() else "an error dialog opened first"


def check_notebook(url: str, name: str, chromium: str, screenshot: Path | None, math: bool) -> list[str]:
    problems, page_errors = [], []
    steps = [(".jp-Notebook .jp-Cell", "the notebook's cells"),
             (".jp-Notebook .jp-MarkdownCell h1", "the rendered title heading"),
             ('.jp-Notebook-ExecutionIndicator[data-status="idle"]', "an idle kernel")]
    if math:
        steps.insert(2, (".jp-Notebook mjx-container", "a rendered equation (MathJax)"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.goto(url, wait_until="load")
        for selector, what in steps:
            problem = wait_for(page, selector, what)
            if problem:
                problems.append(f"{name}: {problem}")
                break
        dialogs = page.locator(".jp-Dialog").all_inner_texts()
        problems += [f"{name}: an error dialog: {' '.join(d.split())[:200]}" for d in dialogs]
        problems += [f"{name}: uncaught exception in the page: {e[:200]}" for e in page_errors]
        if screenshot:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
        browser.close()
    return problems


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", type=Path, help="the notebook to open, e.g. nbs/70_regressor.ipynb")
    ap.add_argument("--screenshot", type=Path, help="where to save a PNG of JupyterLab with the notebook open")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                    help="path of the Chromium binary (default: /usr/bin/chromium or $CHROMIUM)")
    args = ap.parse_args(argv)
    if not args.notebook.is_file() or args.notebook.suffix != ".ipynb":
        print(f"{args.notebook} not found: give the path of a notebook of this repository.")
        return 2
    if not Path(args.chromium).exists():
        print(f"Chromium not found at {args.chromium}: install it (apt-get install chromium) or pass --chromium.")
        return 2
    # JupyterLab may save what it opens: it gets a copy of the notebook in a folder of its own
    root, token, port = Path(tempfile.mkdtemp(prefix="maplex-lab-")), secrets.token_hex(16), free_port()
    shutil.copy(args.notebook, root / args.notebook.name)
    rel = args.notebook.name
    try:
        lab = start_lab(root, port, token)
    except RuntimeError as e:
        shutil.rmtree(root, ignore_errors=True)
        print(f"JupyterLab did not start: {e}")
        return 2
    try:
        problems = check_notebook(f"http://127.0.0.1:{port}/lab/tree/{rel}?token={token}&reset",
                                  args.notebook.name, args.chromium, args.screenshot, has_math(args.notebook))
    finally:
        stop(lab)
        shutil.rmtree(root, ignore_errors=True)
    if problems:
        print(f"JupyterLab check failed for {rel}:")
        print("\n".join(f"  - {p}" for p in problems))
        return 1
    print(f"JupyterLab ok: {rel} opened, rendered (headings, equations), kernel idle, no error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
