#!/usr/bin/env python3
"""List notebook cells that nbdev's docs build would execute although they are not exports.

nbdev 2 runs, while building the docs, every cell that holds an import (to make `show_doc` work). A cell
that mixes imports with other code therefore runs in the docs build too, out of its notebook's order:
keep imports in cells of their own. Exit status 1 when such a cell exists.
"""
import ast
import sys
from pathlib import Path

import nbformat

SAFE = (ast.Import, ast.ImportFrom)


def offenders(path: Path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "#| export" in cell.source or "#| default_exp" in cell.source:
            continue
        try:
            tree = ast.parse("\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith(("%", "!"))))
        except SyntaxError:
            continue
        if any(isinstance(n, SAFE) for n in ast.walk(tree)):
            extra = [n for n in tree.body if not isinstance(n, SAFE)]
            if extra:
                yield i, cell.source.splitlines()[0]


def main(paths) -> int:
    bad = [(p, i, line) for p in paths for i, line in offenders(Path(p))]
    for p, i, line in bad:
        print(f"{p}: cell {i} mixes imports with other code: {line!r}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or sorted(map(str, Path("nbs").glob("*.ipynb")))))
