#!/usr/bin/env python3
"""Open every page of the built docs site in headless Chromium and fail on what a visitor would hit.

Checks, per page: the main content is not empty; no Python traceback or error output is
shown; every internal link points at a page (and anchor) that exists; every image has
loaded. Saves a screenshot of the landing page.

    python tools/check_site.py _docs --screenshot artifacts/landing.png

Chromium comes from Debian (`apt-get install chromium`); Playwright only drives it.
"""
import argparse
import functools
import http.server
import os
import sys
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
ERROR_MARKERS = ("Traceback (most recent call last)", "ModuleNotFoundError", "NameError:")

PAGE_JS = """() => {
  const main = document.querySelector('main') || document.body;
  return {
    text: main.innerText,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    broken_images: [...document.querySelectorAll('img')]
        .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src')),
    n_images: document.querySelectorAll('img').length,
    error_outputs: document.querySelectorAll('.output.error, .cell-output-error').length,
  };
}"""


def serve(root: Path):
    """Serve `root` on a free loopback port in a daemon thread; return (server, base_url)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def check_site(site: Path, screenshot: Path | None, chromium: str, min_chars: int = 200) -> list[str]:
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    if "index.html" not in pages:
        return [f"{site}/index.html is missing: was the site built?"]
    problems, anchors, seen_links = [], {}, []
    server, base = serve(site)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name in pages:
                resp = page.goto(base + name, wait_until="load")
                if resp is None or resp.status != 200:
                    problems.append(f"{name}: HTTP {resp.status if resp else 'no response'}")
                    continue
                info = page.evaluate(PAGE_JS)
                anchors[name] = set(info["ids"])
                if len(info["text"].strip()) < min_chars:
                    problems.append(f"{name}: page is (nearly) empty ({len(info['text'].strip())} characters)")
                for marker in ERROR_MARKERS:
                    if marker in info["text"]:
                        problems.append(f"{name}: shows an error output ({marker!r})")
                if info["error_outputs"]:
                    problems.append(f"{name}: {info['error_outputs']} error output cell(s)")
                for src in info["broken_images"]:
                    problems.append(f"{name}: image did not load: {src}")
                seen_links += [(name, href) for href in info["links"]]
                print(f"  ok? {name}: {len(info['text'])} chars, {info['n_images']} images, "
                      f"{len(info['links'])} links")
            if screenshot:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.goto(base + "index.html", wait_until="load")
                page.screenshot(path=str(screenshot), full_page=False)
            browser.close()
    finally:
        server.shutdown()
    for name, href in seen_links:
        url, frag = urldefrag(href)
        if not url.startswith(base):
            continue  # external links are not followed (no network here)
        target = urlparse(url).path.lstrip("/") or "index.html"
        if target.endswith("/"):
            target += "index.html"
        if not (site / target).exists():
            problems.append(f"{name}: broken internal link -> {target}")
        elif frag and target in anchors and frag not in anchors[target]:
            problems.append(f"{name}: link to missing anchor -> {target}#{frag}")
    return list(dict.fromkeys(problems))  # each problem once, in the order found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("site", type=Path, help="the built site directory (e.g. _docs)")
    ap.add_argument("--screenshot", type=Path, help="where to save a PNG of the landing page")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                    help="path of the Chromium binary (default: /usr/bin/chromium or $CHROMIUM)")
    args = ap.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"Chromium not found at {args.chromium}: install it (apt-get install chromium) or pass --chromium.")
        return 2
    problems = check_site(args.site, args.screenshot, args.chromium)
    n = len(list(args.site.rglob("*.html")))
    if problems:
        print(f"{len(problems)} problem(s) in {n} pages:")
        print("\n".join(f"  - {p}" for p in problems))
        return 1
    print(f"site ok: {n} pages, no empty page, traceback, broken link or broken image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
