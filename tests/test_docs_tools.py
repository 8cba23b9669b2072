"""The docs tools: the offline renderer (tools/quarto), the visitor's check of the site (tools/check_site.py) and
the JupyterLab check (tools/check_lab.py). Each check is shown to fail on the fault it exists to catch."""
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))
import check_site  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install chromium)")


def load_renderer():
    loader = importlib.machinery.SourceFileLoader("quarto_offline", str(TOOLS / "quarto"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def code(text, outputs=()):
    return {"cell_type": "code", "metadata": {}, "execution_count": None, "source": text, "outputs": list(outputs)}


SHOW_DOC = ('---\n\n[source](https://example.org/x.py#L1){target="_blank" style="float:right; font-size:smaller"}'
            '\n\n### Thing\n\n*A documented thing.*')
LOSS = (r"$$L(\theta) = \frac{\sum_i w_i e_i^2}{\sum_i w_i}, \qquad w_i = \begin{cases} s_d & \text{a training cell}"
        r"\\ \tau & \text{a measured target cell (target\_weight)}\end{cases}$$")
NOTEBOOK = {
    "cells": [
        {"cell_type": "raw", "metadata": {}, "source": "---\ntitle: A lesson\ndescription: 'With `code` in it'\n"
                                                      "output-file: lesson.html\n---\n"},
        md("## The idea\n\nSee [the other page](other.ipynb#part) and " + LOSS),
        code("#| echo: false\n#| output: asis\nshow_doc(Thing)",
             [{"output_type": "display_data", "metadata": {}, "data": {"text/markdown": SHOW_DOC}}]),
        code("#| code-fold: true\nprint('folded')",
             [{"output_type": "stream", "name": "stdout", "text": "folded\n"}]),
        md("## Exercises\n\n1. Print one."),
        md('::: {.callout-tip collapse="true"}\n## Solution to exercise 1'),
        code("print(1)", [{"output_type": "stream", "name": "stdout", "text": "1\n"}]),
        md(":::"),
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}
OTHER = dict(NOTEBOOK, cells=[{"cell_type": "raw", "metadata": {}, "source": "---\ntitle: Reading `perf stat`\n---\n"},
                              md("## Part\n\n" + "Some prose. " * 30)])


def build_site(root: Path) -> Path:
    """Render the notebooks above with the offline renderer, as `nbdev_docs` would; return the site folder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "_quarto.yml").write_text("project:\n  type: website\n  output-dir: _site\nwebsite:\n  title: t\n")
    (root / "lesson.ipynb").write_text(json.dumps(NOTEBOOK))
    (root / "other.ipynb").write_text(json.dumps(OTHER))
    (root / "index.ipynb").write_text(json.dumps(OTHER))
    cwd = Path.cwd()
    try:
        os.chdir(root)
        load_renderer().render_site(root)
    finally:
        os.chdir(cwd)
    return root / "_site"


def test_renderer_renders_what_quarto_would(tmp_path):
    site = build_site(tmp_path)
    page = (site / "lesson.html").read_text()
    assert (site / "other.html").exists() and "lesson.html" in os.listdir(site)  # output-file is honoured
    assert 'href="other.html#part"' in page  # a link to a notebook points at its page
    assert "{target=" not in page and 'href="https://example.org/x.py#L1"' in page  # link attributes applied
    assert "$$" not in page and page.count('<math display="block"') == 1 and "a measured target cell (target_weight)</mtext>" in page
    assert '<details class="callout callout-tip"><summary class="callout-title">Solution to exercise 1' in page
    assert '<details class="code-fold"><summary>Code</summary>' in page and "#| code-fold" not in page
    assert "show_doc(Thing)" not in page  # echo: false shows only the output
    assert "<code>code</code>" in page  # the subtitle's Markdown is rendered
    sidebar, head_title = page.split('<nav id="sidebar">')[1].split("</nav>")[0], page.split("</title>")[0]
    assert "Reading <code>perf stat</code>" in sidebar and "`" not in sidebar + head_title  # ...and titles


# Pages as a visitor met them before this check existed, one fault each (the first two are verbatim from the
# site the pandoc-notebook renderer built: nbdev's source links and lesson 70's loss).
LEAKY = {
    "attr.html": '<p><a href="x.html">source</a>{target="_blank" style="float:right; font-size:smaller"}</p>',
    "tex.html": r'<p><span class="math display">$$L(\theta) = \frac{\sum_i w_i}{2}$$</span></p>',
    "begin.html": r"<p>w = \begin{cases} 1 \end{cases}</p>",
    "fence.html": "<p>```python print(1) ```</p>",
    "div.html": "<p>::: {.callout-tip}</p><p>text</p><p>:::</p>",
    "tick.html": "<h2>The <code>`fit`</code> step</h2>",
    "navtick.html": '<nav><a href="index.html">Appendix A6: reading `perf stat`</a></nav>',
    "tiny.html": '<p><img src="small.png"></p>',
    "shrunk.html": '<p><img src="huge.png"></p>',
}
EXPECTED = {
    "attr.html": "a Quarto/pandoc attribute", "tex.html": "not rendered to MathML", "begin.html": "TeX environment",
    "fence.html": "a code fence", "div.html": "fenced-div marker", "tick.html": "backticks in a heading",
    "navtick.html": "navigation link",
    "tiny.html": "draw it wider", "shrunk.html": "its text is unreadable",
}


def write_figure(path: Path, width_px: int, height_px: int = 60):
    fig = plt.figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def leaky_site(root: Path) -> Path:
    site = root / "leaky"
    site.mkdir()
    filler = "<p>" + "Ordinary prose that reads well. " * 12 + "</p>"
    pages = dict(LEAKY, **{"index.html": filler})
    for name, body in pages.items():
        (site / name).write_text(f"<html><head><style>img {{ max-width: 100%; }}</style></head><body><main style='width:700px'>{filler}{body}</main></body></html>")
    write_figure(site / "small.png", 120)
    write_figure(site / "huge.png", 3000)
    return site


@needs_chromium
def test_site_check_finds_each_leak_and_passes_a_clean_site(tmp_path):
    problems = check_site.check_site(leaky_site(tmp_path), CHROMIUM, min_chars=50)
    for name, what in EXPECTED.items():
        assert any(p.startswith(f"{name}:") and what in p for p in problems), (name, what, problems)
    assert not [p for p in problems if p.startswith("index.html")]
    clean = check_site.check_site(build_site(tmp_path / "proj"), CHROMIUM, tmp_path / "shots", ("lesson.html",),
                                  min_chars=50)
    assert clean == [] and (tmp_path / "shots" / "lesson.png").stat().st_size > 0


@needs_chromium
def test_lab_check_opens_a_notebook_and_reports_an_unreadable_one(tmp_path):
    good = tmp_path / "good.ipynb"
    nb = dict(NOTEBOOK, cells=[md("# A title\n\nWith $x^2$."), code("1 + 1")])
    good.write_text(json.dumps(nb))
    bad = tmp_path / "bad.ipynb"
    bad.write_text('{"cells": [ cut short')
    run = [sys.executable, str(TOOLS / "check_lab.py"), "--chromium", CHROMIUM]
    ok = subprocess.run(run + [str(good)], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    failed = subprocess.run(run + [str(bad)], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and "Unreadable Notebook" in failed.stdout, failed.stdout + failed.stderr
