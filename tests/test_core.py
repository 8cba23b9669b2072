"""Plumbing shared by every module: the MaplexError family, atomic files and folders, locks, thread state."""
import importlib
import inspect
import os
import pkgutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import maplex
from maplex.core import BusyError, MaplexError, atomic_dir, atomic_write, file_lock

MODULES = sorted(m.name for m in pkgutil.iter_modules(maplex.__path__) if not m.name.startswith("_"))


def test_every_error_class_is_a_maplex_error():
    classes = {f"{m}.{name}": cls for m in MODULES for name, cls in vars(importlib.import_module(f"maplex.{m}")).items()
               if inspect.isclass(cls) and issubclass(cls, Exception) and cls.__module__ == f"maplex.{m}"}
    assert {"nb201", "data", "regressor", "help", "profile", "machine", "checks"} <= set(MODULES)  # found them all
    assert len(classes) >= 15, sorted(classes)
    assert [n for n, cls in classes.items() if not issubclass(cls, MaplexError)] == []


def _kill_while_writing(tmp_path: Path, code: str) -> None:
    "Run `code` in a child process that blocks inside the write; SIGKILL it there."
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from maplex.core import atomic_dir, atomic_file
        folder = Path(sys.argv[1])
        {code}
    """)
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "inside"  # the child is in the middle of its write
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)


def test_a_killed_atomic_write_leaves_the_old_file(tmp_path):
    atomic_write(tmp_path / "a.txt", "old")
    _kill_while_writing(tmp_path, """
        with atomic_file(folder / "a.txt") as f:
            f.write("new, half"); f.flush()
            print("inside", flush=True); time.sleep(60)
    """)
    assert (tmp_path / "a.txt").read_text() == "old"


def test_a_killed_atomic_dir_leaves_the_old_folder(tmp_path):
    with atomic_dir(tmp_path / "model") as d:
        (d / "config.json").write_text("old config")
        (d / "weights.pt").write_text("old weights")
    _kill_while_writing(tmp_path, """
        with atomic_dir(folder / "model") as d:
            (d / "config.json").write_text("new config")
            print("inside", flush=True); time.sleep(60)
    """)
    assert (tmp_path / "model" / "config.json").read_text() == "old config"
    assert (tmp_path / "model" / "weights.pt").read_text() == "old weights"


def test_a_lock_is_released_when_its_holder_dies(tmp_path):
    _kill_while_writing(tmp_path, """
        from maplex.core import file_lock
        with file_lock(folder / "x.lock"):
            print("inside", flush=True); time.sleep(60)
    """)
    with file_lock(tmp_path / "x.lock", timeout=0): pass


def test_a_held_lock_names_the_file(tmp_path):
    with file_lock(tmp_path / "r.lock", what="results.csv"):
        with pytest.raises(BusyError, match="results.csv is locked by another process"):
            with file_lock(tmp_path / "r.lock", timeout=0, what="results.csv"): pass


def test_atomic_dir_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "model").write_text("a file")
    with pytest.raises(MaplexError, match="not a folder"):
        with atomic_dir(tmp_path / "model"): pass


def test_threads_are_restored_by_the_profilers():
    from maplex import profile
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = profile.build_net(0).eval()
        x = profile.make_input((1, *profile.INPUT_SHAPE))
        profile.measure("torch", net, x, threads=2, warmup=0, repeats=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_atomic_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "shared.csv", "a,b\n1,2\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # what open() gives under umask 022, not mkstemp's 0600
    finally:
        os.umask(mask)


def test_the_common_path_imports_from_the_package_lazily():
    "`from maplex import MapleX, load_nb201, load_devices` works, and `import maplex` alone loads no torch."
    code = """
import sys
import maplex
assert "torch" not in sys.modules and "maplex.regressor" not in sys.modules
from maplex import MapleX, MaplexPredictor, load_nb201, load_devices, variant, data
from maplex.regressor import MapleX as M
assert MapleX is M and data.load_nb201 is load_nb201 and "MapleX" in dir(maplex)
try:
    maplex.no_such_name
except AttributeError as e:
    assert "no_such_name" in str(e)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_the_predictors_follow_the_estimator_contract():
    "MapleX and MaplexPredictor: the Predictor protocol, keyword-only fit arguments, settings by name."
    from maplex.core import Predictor, contract_gaps
    from maplex.ours import MaplexPredictor
    from maplex.regressor import MapleX, variant
    for model in (variant("MAPLE"), MaplexPredictor()):
        assert contract_gaps(type(model)) == [] and isinstance(model, Predictor)
        copy = type(model)(**model.get_params())
        assert copy.get_params() == model.get_params() and copy is not model and copy != model
    assert contract_gaps(MapleX().set_params(seed=3)) == []


def test_contract_gaps_names_what_is_missing():
    from maplex.core import contract_gaps

    class OldStyle:  # a method written against the old interface: fit(task, seed)
        probe_archs = ()
        def fit(self, task, seed=0): return self
        def predict(self, archs): return archs
    gaps = contract_gaps(OldStyle)
    assert "no get_params" in gaps and "fit takes no keyword-only 'train'" in gaps

    class NotCallable:
        fit = None
    assert "fit is not callable" in contract_gaps(NotCallable)
