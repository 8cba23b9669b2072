"""pytest configuration shared by the notebook tests (nbval) and `tests/`.

`nbdev_clean` sets every `execution_count` to null, and nbval refuses cells that have
stored outputs but no count ("Unrun reference cell has outputs"). We give such cells a
count in memory only (the files are untouched), so strict `--nbval` still compares every
stored output against a fresh run.
"""
import nbval.plugin as _nbval

_collect = _nbval.IPyNbFile.collect


def _collect_with_counts(self):
    items = list(_collect(self))
    code_cells = [c for c in self.nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells, start=1):
        if cell.execution_count is None:
            cell.execution_count = i
    return items


_nbval.IPyNbFile.collect = _collect_with_counts


import pytest


@pytest.fixture
def one_thread():
    "Run a test with torch on one thread: on a busy 2-core machine a 2-thread forward pass waits for a core."
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes of work (HELP meta-training); runs with MAPLEX_SLOW=1 (`make test-slow`)")


def pytest_collection_modifyitems(config, items):
    import os
    if os.environ.get("MAPLEX_SLOW"): return
    skip = pytest.mark.skip(reason="slow (HELP meta-trains for minutes): run `make test-slow` (MAPLEX_SLOW=1)")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)
