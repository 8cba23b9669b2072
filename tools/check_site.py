#!/usr/bin/env python3
"""Open every page of the built docs site in headless Chromium and fail on what a visitor would see go wrong.

Per page, on the text a visitor reads (code blocks and rendered math aside):
- raw markup that should have been rendered: Quarto/pandoc attributes (`{target="_blank" ...}`, `{.callout-note}`),
  TeX (`$$`, `\\begin{`, `\\frac` and other commands), code fences and fenced-div colons, backticks in a heading
  or subtitle;
- display or inline math that did not become MathML, or MathML that takes no space;
- a figure shrunk to under `MIN_SCALE` of its own width (its lettering becomes unreadable), or narrower than
  `MIN_FIGURE_SHARE` of the text column;
- an empty page, a Python traceback or error output, a broken internal link or anchor, an image that did not load.
Saves screenshots of chosen pages.

    python tools/check_site.py _docs --screenshots artifacts index.html regressor.html evaluation.html

Chromium comes from Debian (`apt-get install chromium`); Playwright only drives it.
"""
import argparse
import functools
import http.server
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import urldefrag, urlparse

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
ERROR_MARKERS = ("Traceback (most recent call last)", "ModuleNotFoundError", "NameError:")
MIN_SCALE = 0.75  # a figure drawn at under 3/4 of its size has lettering too small to read
MIN_FIGURE_SHARE = 0.45  # a figure narrower than this share of the text column reads as a thumbnail

# Raw markup in prose: each pattern names what leaked.
LEAKS = [
    (re.compile(r"\{(?:target|style|width|height|fig-\w+)=[^}]*\}"), "a Quarto/pandoc attribute"),
    (re.compile(r"\{[.#][A-Za-z][\w-]*(?:\s[^}]*)?\}"), "a Quarto/pandoc class or id attribute"),
    (re.compile(r"\$\$"), "display-math delimiters ($$)"),
    (re.compile(r"\\begin\{|\\end\{"), "a TeX environment (\\begin{...})"),
    (re.compile(r"\\(?:frac|sum|text|math\w+|left|right|hat|big\w*|qquad|alpha|beta|theta|sigma|mu|tau|nu|ell)\b"),
     "a TeX command"),
    (re.compile(r"```"), "a code fence"),
    (re.compile(r"^:::", re.M), "a fenced-div marker (:::)"),
]

PAGE_JS = """() => {
  const main = document.querySelector('main') || document.body;
  const prose = main.cloneNode(true);
  prose.querySelectorAll('pre, code, math, script, style, .sourceCode').forEach(e => e.remove());
  document.body.appendChild(prose);  // innerText needs a rendered node
  prose.style.position = 'absolute'; prose.style.left = '-99999px';
  const proseText = prose.innerText;
  prose.remove();
  const column = main.getBoundingClientRect().width
      - parseFloat(getComputedStyle(main).paddingLeft) - parseFloat(getComputedStyle(main).paddingRight);
  return {
    text: main.innerText,
    prose: proseText,
    headings: [...document.querySelectorAll('h1,h2,h3,h4,h5,h6,.page-subtitle,nav a,title')].map(h => h.innerText),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    images: [...main.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
        natural: i.naturalWidth, shown: i.getBoundingClientRect().width})),
    column: column,
    math_unrendered: [...main.querySelectorAll('span.math')].filter(s => !s.querySelector('math'))
        .map(s => s.innerText.slice(0, 60)),
    math_empty: [...main.querySelectorAll('math')].filter(m => m.getBoundingClientRect().height < 4).length,
    error_outputs: main.querySelectorAll('.output.error, .cell-output-error').length,
  };
}"""


def serve(root: Path):
    """Serve `root` on a free loopback port in a daemon thread; return (server, base_url)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # one line per request would bury the report
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def excerpt(text: str, match: re.Match) -> str:
    return " ".join(text[max(0, match.start() - 30):match.end() + 30].split())


def leak_problems(name: str, info: dict) -> list[str]:
    """Raw markup a visitor would read on the page."""
    problems = []
    for pattern, what in LEAKS:
        m = pattern.search(info["prose"])
        if m:
            problems.append(f"{name}: raw markup, {what}: ...{excerpt(info['prose'], m)}...")
    for h in info["headings"]:
        if "`" in h:
            problems.append(f"{name}: backticks in a heading, subtitle, title or navigation link: {h!r}")
    for snippet in info["math_unrendered"]:
        problems.append(f"{name}: an equation was not rendered to MathML: {snippet!r}")
    if info["math_empty"]:
        problems.append(f"{name}: {info['math_empty']} rendered equation(s) take no space")
    return problems


def figure_problems(name: str, info: dict) -> list[str]:
    """Images that did not load, or are drawn too small to read."""
    problems = []
    for img in info["images"]:
        if not img["ok"]:
            problems.append(f"{name}: image did not load: {img['src']}")
        elif img["shown"] < MIN_SCALE * img["natural"]:
            problems.append(f"{name}: figure {img['src']} is shrunk to {img['shown']:.0f} of its {img['natural']} px: "
                            "its text is unreadable; draw it narrower")
        elif img["shown"] < MIN_FIGURE_SHARE * info["column"]:
            problems.append(f"{name}: figure {img['src']} is {img['shown']:.0f} px wide in a {info['column']:.0f} px "
                            "text column: draw it wider")
    return problems


def page_problems(name: str, info: dict, min_chars: int = 200) -> list[str]:
    problems = []
    if len(info["text"].strip()) < min_chars:
        problems.append(f"{name}: page is (nearly) empty ({len(info['text'].strip())} characters)")
    problems += [f"{name}: shows an error output ({m!r})" for m in ERROR_MARKERS if m in info["text"]]
    if info["error_outputs"]:
        problems.append(f"{name}: {info['error_outputs']} error output cell(s)")
    return problems + leak_problems(name, info) + figure_problems(name, info)


def link_problems(site: Path, base: str, seen_links, anchors: dict) -> list[str]:
    problems = []
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
    return problems


def check_site(site: Path, chromium: str, screenshots: Path | None = None, shots=("index.html",),
               min_chars: int = 200) -> list[str]:
    """Every problem a visitor would meet on the site, one line each; screenshots of `shots` into `screenshots`."""
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
                problems += page_problems(name, info, min_chars)
                seen_links += [(name, href) for href in info["links"]]
                print(f"  {name}: {len(info['text'])} chars, {len(info['images'])} images, {len(info['links'])} links")
                if screenshots and name in shots:
                    screenshots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshots / f"{Path(name).stem}.png"), full_page=False)
            browser.close()
    finally:
        server.shutdown()
    missing = [s for s in shots if screenshots and s not in pages]
    problems += [f"{s}: asked for a screenshot of a page that is not there" for s in missing]
    problems += link_problems(site, base, seen_links, anchors)
    return list(dict.fromkeys(problems))  # each problem once, in the order found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("site", type=Path, help="the built site directory (e.g. _docs)")
    ap.add_argument("shots", nargs="*", default=["index.html"], help="pages to screenshot (default: index.html)")
    ap.add_argument("--screenshots", type=Path, help="folder for PNG screenshots of the pages named after the site")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                    help="path of the Chromium binary (default: /usr/bin/chromium or $CHROMIUM)")
    args = ap.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"Chromium not found at {args.chromium}: install it (apt-get install chromium) or pass --chromium.")
        return 2
    problems = check_site(args.site, args.chromium, args.screenshots, tuple(args.shots))
    n = len(list(args.site.rglob("*.html")))
    if problems:
        print(f"{len(problems)} problem(s) in {n} pages:")
        print("\n".join(f"  - {p}" for p in problems))
        return 1
    print(f"site ok: {n} pages; no raw markup, unrendered math, unreadable figure, empty page, traceback, "
          "broken link or broken image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
