"""results.csv survives kills: `maplex evaluate` killed at random moments and re-run gives the uninterrupted file."""
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from maplex import evaluation
from maplex.core import BusyError
from maplex.results import ResultsError, ResultsFile

pytestmark = pytest.mark.skipif(not os.environ.get("MAPLEX_DATA"), reason="needs MAPLEX_DATA (the public latency table)")

MAPLEX = str(Path(sys.executable).parent / "maplex")  # the console script of this environment
ARGS = ["--protocol", "P-X6", "--methods", "lut", "closest-linear", "flops-linear", "--k", "3", "--seeds", "4"]  # 72 rows


def evaluate(out: Path, workers: int = 1) -> subprocess.Popen:
    return subprocess.Popen([MAPLEX, "evaluate", *ARGS, "--workers", str(workers), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def rows_in(path: Path) -> int:
    return max(0, path.read_text().count("\n") - 1) if path.exists() else 0


def comparable(path: Path) -> pd.DataFrame:
    "Every column but the timing one, in file order."
    return pd.read_csv(path).drop(columns="fit_predict_s")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    assert evaluate(out).wait(timeout=600) == 0
    return comparable(out / "results.csv")


@pytest.mark.parametrize("sig, after_rows, workers", [(signal.SIGKILL, 0, 1), (signal.SIGKILL, "random", 2),
                                                      (signal.SIGTERM, "random", 2)])
def test_killed_and_rerun_gives_the_uninterrupted_file(tmp_path, uninterrupted, sig, after_rows, workers):
    # the uninterrupted file comes from one process, the killed runs from two: the rows must not depend on that either
    n = random.Random(f"{sig}-{time.time()}").randint(1, 60) if after_rows == "random" else after_rows
    child, csv = evaluate(tmp_path, workers), tmp_path / "results.csv"
    deadline = time.time() + 300
    while rows_in(csv) < n and child.poll() is None and time.time() < deadline: time.sleep(0.01)
    workers_of = subprocess.run(["pgrep", "-P", str(child.pid)], capture_output=True, text=True).stdout.split()
    child.send_signal(sig)
    child.wait(timeout=120)
    deadline = time.time() + 10
    while (alive := [p for p in workers_of if Path(f"/proc/{p}").exists()]) and time.time() < deadline: time.sleep(0.1)
    assert not alive, f"worker processes {alive} outlived the killed run"
    assert child.returncode != 0 or rows_in(csv) == 72  # it was stopped (or had just finished)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn last line is reported; the re-run recomputes it
        assert evaluate(tmp_path).wait(timeout=600) == 0
    pd.testing.assert_frame_equal(comparable(csv), uninterrupted)
    assert len(uninterrupted) == 72 and not uninterrupted.duplicated(evaluation.KEY).any()


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    with ResultsFile(tmp_path / "results.csv", evaluation.COLUMNS, evaluation.KEY).lock():
        child = evaluate(tmp_path)
        assert child.wait(timeout=300) == 2
        assert "is locked by another process" in child.stderr.read()


def test_another_versions_file_is_refused(tmp_path):
    (tmp_path / "results.csv").write_text("protocol,method,target,k,seed,acc10\nP-X6,lut,gold_6226,3,0,0.5\n")
    with pytest.raises(ResultsError, match="another version"):
        evaluation.run("P-X6", ["lut"], seeds=[0], targets=["gold_6226"], out=tmp_path / "results.csv", workers=1,
                       progress=False)


def test_force_recomputes_without_duplicates(tmp_path):
    run = lambda force: evaluation.run("P-X6", ["flops-linear"], seeds=[0, 1], targets=["gold_6226"], workers=1,
                                       out=tmp_path / "results.csv", progress=False, force=force)
    run(False)
    again = run(True)
    held = evaluation.load_results(tmp_path / "results.csv")
    assert len(again) == len(held) == 2 and not held.duplicated(evaluation.KEY).any()


def test_rows_arrive_as_jobs_finish():
    jobs = [("maple", "P-X6", "gold_6226", 3, 0), ("flops-linear", "P-X6", "gold_6226", 3, 0),
            ("flops-linear", "P-X6", "gold_6226", 3, 1)]
    first = next(evaluation._in_processes(jobs, 2, ()))  # the slow MAPLE job was submitted first
    assert first["method"] == "flops-linear"
