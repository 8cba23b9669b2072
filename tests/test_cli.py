"""The `maplex` command line: the user-facing `predict` job and its bad-input contract
(exit status 2, one clear line on stderr, no partial output file)."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from maplex import data, nb201
from maplex.cli import main

needs_data = pytest.mark.skipif(not os.environ.get("MAPLEX_DATA"), reason="needs MAPLEX_DATA (the public table)")
TRAIN = ["silver_4114", "gold_6240", "1080ti_1", "titanx_1", "titan_rtx_1"]
TARGET = "gold_6226"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A user's three input files, made from the public table with the target held out."""
    tmp = tmp_path_factory.mktemp("user")
    table = data.load_nb201()
    data.write_latency_csv(table.select(TRAIN).take(data.POOL), tmp / "train.csv")
    devs = data.load_devices().df.loc[TRAIN + [TARGET]].reset_index()
    devs.to_csv(tmp / "devices.csv", index=False)
    cells = [3, 250, 611]
    from maplex.evaluation import get_method
    cells += list(get_method("maple-x").probe_archs)
    pd.DataFrame({"arch_str": [nb201.arch_str(i) for i in cells],
                  "latency_ms": table[TARGET].loc[cells].to_numpy()}).to_csv(tmp / "samples.csv", index=False)
    return tmp


def run_cli(files, samples=None, **over):
    args = {"--train": files / "train.csv", "--devices": files / "devices.csv", "--target": TARGET,
            "--samples": samples or files / "samples.csv", "--method": "maple-x", "--out": files / "pred.csv"}
    args.update(over)
    argv = ["predict"] + [str(x) for kv in args.items() for x in kv]
    return main(argv)


@needs_data
@pytest.mark.parametrize("method", ["maple-x", "maple", "flops-linear"])
def test_predict_writes_every_cell(files, method):
    out = files / f"pred_{method}.csv"
    assert run_cli(files, **{"--method": method, "--out": out}) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["arch_index", "arch_str", "latency_ms"]
    assert len(pred) == nb201.N_ARCHS and pred.latency_ms.gt(0).all()
    assert pred.arch_str.tolist() == nb201.all_arch_strs()


@needs_data
def test_closest_linear_needs_training_devices_on_every_cell(files, capsys, tmp_path):
    assert run_cli(files, **{"--method": "closest-linear", "--out": tmp_path / "x.csv"}) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "closest-linear" in err and len(err) < 700
    assert not (tmp_path / "x.csv").exists()
    full = tmp_path / "train_full.csv"
    data.write_latency_csv(data.load_nb201().select(TRAIN), full)
    assert run_cli(files, **{"--method": "closest-linear", "--train": full, "--out": tmp_path / "y.csv"}) == 0
    assert len(pd.read_csv(tmp_path / "y.csv")) == nb201.N_ARCHS


def bad_samples(files, name, rows):
    p = files / name
    pd.DataFrame(rows, columns=["arch_str", "latency_ms"]).to_csv(p, index=False)
    return p


@needs_data
@pytest.mark.parametrize("case, rows, message", [
    ("outside", [("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", 3.0)], "conv_5x5"),
    ("duplicate", [(nb201.arch_str(3), 3.0), (nb201.arch_str(3), 3.1)], "more than once"),
    ("negative", [(nb201.arch_str(3), -1.0)], "not a positive number"),
    ("zero", [(nb201.arch_str(3), 0.0)], "not a positive number"),
    ("nan", [(nb201.arch_str(3), float("nan"))], "not a positive number"),
    ("too_few", [(nb201.arch_str(3), 3.0)], "probe cells"),
])
def test_bad_samples_exit_2_with_one_line_and_no_file(files, capsys, case, rows, message):
    out = files / f"never_{case}.csv"
    assert run_cli(files, samples=bad_samples(files, f"{case}.csv", rows), **{"--out": out}) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


@needs_data
def test_unknown_target_and_target_in_training_table(files, capsys, tmp_path):
    assert run_cli(files, **{"--target": "my_phone", "--out": tmp_path / "a.csv"}) == 2
    assert "no row in the device table" in capsys.readouterr().err
    table = data.load_nb201()
    data.write_latency_csv(table.select(TRAIN + [TARGET]).take(data.POOL), tmp_path / "leaky.csv")
    assert run_cli(files, **{"--train": tmp_path / "leaky.csv", "--out": tmp_path / "b.csv"}) == 2
    assert "column of the training table" in capsys.readouterr().err
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "b.csv").exists()


@needs_data
def test_unknown_method(files, capsys, tmp_path):
    assert run_cli(files, **{"--method": "maple-z", "--out": tmp_path / "c.csv"}) == 2
    assert "unknown method" in capsys.readouterr().err


def test_help_runs_as_a_command():
    out = subprocess.run([sys.executable, "-c", "from maplex.cli import main; raise SystemExit(main(['--help']))"], capture_output=True, text=True)
    assert out.returncode == 0 and "predict" in out.stdout and "evaluate" in out.stdout


def test_missing_data_is_one_clear_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MAPLEX_DATA", str(tmp_path / "nothing-here"))
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert "maplex download" in err or "MAPLEX_DATA" in err
