"""The `maplex` command line: the offline demo, the parser and every sub-command's help, `probes`, and the
user-facing `predict` job with its bad-input contract (exit status 2, one clear line on stderr, no partial
output file).

Most tests use the embedded dataset that ships with maplex (`maplex.profile.load_embedded`), so they run
without the public data; the few that need HELP's public table are marked `needs_data`.
"""
import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maplex import data, evaluation, nb201, profile
from maplex.cli import DEMO_METHODS, build_parser, leave_one_setting_out, main, public_pool_hint

needs_data = pytest.mark.skipif(not os.environ.get("MAPLEX_DATA"), reason="needs MAPLEX_DATA (the public table)")
EMB_TARGET = "vcpu2_ort_t1_b4"  # the embedded setting a user's files stand in for
CLI = [sys.executable, "-c", "import sys; from maplex.cli import main; sys.exit(main())"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """A fresh machine: no MAPLEX_DATA and an empty download cache."""
    monkeypatch.delenv("MAPLEX_DATA", raising=False)
    monkeypatch.setenv("MAPLEX_CACHE", str(tmp_path / "empty-cache"))
    return tmp_path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 700, err
    return err


# ---------------------------------------------------------------- the parser and its help

SUBCOMMANDS = ["demo", "download", "info", "probes", "predict", "profile", "evaluate"]


def test_help_runs_as_a_command():
    out = subprocess.run(CLI + ["--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in SUBCOMMANDS:
        assert f"    {command}" in out.stdout, command
    assert "maplex demo" in out.stdout and "maplex download" in out.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: maplex {command}")
    description = out.split("\n\n")[1]
    assert len(description.split()) >= 5, description  # a sentence, not just the usage line


def test_profile_is_lesson_90s_parser():
    args = build_parser().parse_args(["profile", "--out", "x", "--archs", "1", "2", "--no-perf"])
    assert args.func is profile.cmd_profile and args.archs == [1, 2] and args.no_perf


def test_profile_bad_setting_is_one_line(capsys, tmp_path):
    assert main(["profile", "--out", str(tmp_path / "p"), "--settings", "gpu-t1-b1", "--no-progress"]) == 2
    assert one_error_line(capsys).startswith("maplex profile: error:")


def test_profile_runs_from_the_cli(capsys, tmp_path):
    out = tmp_path / "prof"
    assert main(["profile", "--out", str(out), "--archs", "1", "2", "--settings", "torch-t1-b1", "--warmup", "0",
                 "--repeats", "1", "--no-characterise", "--no-perf", "--no-progress"]) == 0
    table, _ = profile.load_profile(out)
    assert table.archs.tolist() == [1, 2] and len(table.devices) == 1
    assert "2 archs x 1 settings" in capsys.readouterr().out


# ---------------------------------------------------------------- probes

def test_probes_of_a_method_without_probes_print_nothing(capsys):
    assert main(["probes", "--method", "flops-linear"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["probes", "--method", "closest-linear"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("method", ["maple", "maple-x"])
def test_probes_print_the_arch_strings(capsys, method):
    assert main(["probes", "--method", method]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and nb201.arch_indices(lines).tolist() == list(evaluation.get_method(method).probe_archs)


def test_probes_unknown_method(capsys):
    assert main(["probes", "--method", "maple-z"]) == 2
    assert "unknown method" in one_error_line(capsys)


# ---------------------------------------------------------------- the demo (offline, embedded dataset)

@pytest.fixture(scope="module")
def emb():
    return profile.load_embedded()


def holdout_task(table, devices, target, k, seed, probe_archs=()):
    "The held-out task of one column of any table (what the demo evaluates)."
    return evaluation.make_task(table, devices, evaluation.leave_one_out(table), target, k, seed, probe_archs)


def test_holdout_task_matches_the_protocols_draw(emb):
    table, devices = emb
    probes = evaluation.get_method("maple-x").probe_archs
    task = holdout_task(table, devices, EMB_TARGET, 3, 7, probes)
    ref = evaluation.make_task(table, devices, evaluation.Protocol("emb", tuple(table.devices), tuple(table.devices)),
                               EMB_TARGET, 3, 7, probes)
    assert task.samples.equals(ref.samples) and task.probes.equals(ref.probes)
    assert task.train.devices == ref.train.devices and EMB_TARGET not in task.train
    assert task.budget == "3+5"


def test_holdout_task_draws_from_the_pool_cells_present(emb):
    table, devices = emb
    part = table.take([*range(0, 900, 3), *table.archs[table.archs >= 900]])  # a partial pool
    task = holdout_task(part, devices, EMB_TARGET, 50, 0)
    assert set(task.samples.index) <= set(range(0, 900, 3))
    with pytest.raises(data.DataError, match="probe cell"):
        holdout_task(part, devices, EMB_TARGET, 3, 0, [1])
    with pytest.raises(data.DataError, match="k = 301"):
        holdout_task(part, devices, EMB_TARGET, 301, 0)


def test_leave_one_setting_out_rows(emb):
    table, devices = emb
    rows = leave_one_setting_out(table, devices, ["closest-linear", "flops-linear"], k=3, seed=0)
    assert len(rows) == 2 * len(table.devices)
    assert list(rows.columns[:8]) == [*evaluation.KEY, "budget", "n_test", "fit_predict_s"]
    assert set(rows.n_test) == {int((table.archs >= 900).sum())} and set(rows.budget) == {"3+0"}
    assert rows.acc10.between(0, 1).all()
    table_ = evaluation.per_device(rows, "acc10", 3)
    assert list(table_.index) == sorted(table.devices) + ["mean"]


def test_leave_one_setting_out_refuses_bad_names(emb):
    table, devices = emb
    with pytest.raises(ValueError, match="unknown method"):
        leave_one_setting_out(table, devices, ["maple-z"])
    with pytest.raises(data.DataError, match="unknown target 'my_laptop' of leave-one-out: choose one of"):
        leave_one_setting_out(table, devices, ["closest-linear"], targets=["my_laptop"])


def test_demo_offline_one_target(offline, capsys):
    assert main(["demo", "--target", EMB_TARGET]) == 0
    out = capsys.readouterr().out
    assert "budget k + p per target: closest-linear 3 + 0, lut 3 + 5, maple 3 + 5, maple-x 3 + 5, maplex 3 + 5" in out
    assert "How to read it: maplex" in out
    assert f"| {EMB_TARGET}" in out and "| mean" in out and "fit + predict" in out
    for m in DEMO_METHODS: assert m in out
    assert out.strip().splitlines()[-1] == public_pool_hint() and "maplex download" in out


@needs_data
def test_demo_hint_names_the_public_pool_when_present():
    assert "maplex demo --data public" in public_pool_hint() and "available" in public_pool_hint()


@needs_data
def test_demo_public_one_target(capsys):
    assert main(["demo", "--data", "public", "--target", "gold_6226", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("P-X6") and "| gold_6226" in out and "14725 measured test cells" in out
    assert main(["demo", "--data", "public", "--target", EMB_TARGET]) == 2
    assert f"unknown target {EMB_TARGET!r} of P-X6" in one_error_line(capsys)


def test_demo_unknown_target_is_one_line(offline, capsys):
    assert main(["demo", "--target", "my_laptop"]) == 2
    err = one_error_line(capsys)
    assert err.startswith("maplex demo: error: unknown target 'my_laptop'") and EMB_TARGET in err


def test_demo_public_without_data_is_one_line(offline, capsys):
    assert main(["demo", "--data", "public"]) == 2
    assert "maplex download" in one_error_line(capsys)


def test_missing_data_is_one_clear_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MAPLEX_DATA", str(tmp_path / "nothing-here"))
    assert main(["info"]) == 2
    assert "MAPLEX_DATA" in one_error_line(capsys)


# ---------------------------------------------------------------- predict: a user's files, from the embedded data

@pytest.fixture(scope="module")
def files(tmp_path_factory, emb):
    """A user's three input files: three embedded settings train, the fourth is the target."""
    tmp = tmp_path_factory.mktemp("user")
    table, devices = emb
    train = [d for d in table.devices if d != EMB_TARGET]
    data.write_latency_csv(table.select(train).take(data.POOL), tmp / "train.csv")
    devices.df.reset_index().to_csv(tmp / "devices.csv", index=False)
    cells = [3, 250, 611, *evaluation.get_method("maple-x").probe_archs]
    write_samples(tmp / "samples.csv", [(nb201.arch_str(i), table[EMB_TARGET].loc[i]) for i in cells])
    return tmp


def write_samples(path, rows):
    pd.DataFrame(rows, columns=["arch_str", "latency_ms"]).to_csv(path, index=False)
    return path


def predict_argv(files, **over):
    args = {"--train": files / "train.csv", "--devices": files / "devices.csv", "--target": EMB_TARGET,
            "--samples": files / "samples.csv", "--method": "maple-x", "--out": files / "pred.csv"}
    args.update(over)
    return ["predict"] + [str(x) for kv in args.items() for x in kv]


def run_cli(files, **over):
    return main(predict_argv(files, **over))


@pytest.mark.parametrize("method", ["maplex", "maple-x", "flops-linear"])
def test_predict_writes_every_cell(files, method, capsys):
    out = files / f"pred_{method}.csv"
    assert run_cli(files, **{"--method": method, "--out": out}) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["arch_index", "arch_str", "latency_ms"]
    assert len(pred) == nb201.N_ARCHS and pred.latency_ms.gt(0).all()
    assert pred.arch_str.tolist() == nb201.all_arch_strs()
    assert f"wrote {nb201.N_ARCHS} predictions" in capsys.readouterr().out


OUTSIDE = "|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|"  # conv_5x5 is not an NB201 operation


@pytest.mark.parametrize("case, rows, message", [
    ("outside", [(OUTSIDE, 3.0)], "conv_5x5"),
    ("duplicate", [(nb201.arch_str(3), 3.0), (nb201.arch_str(3), 3.1)], "more than once"),
    ("negative", [(nb201.arch_str(3), -1.0)], "not a positive number"),
    ("zero", [(nb201.arch_str(3), 0.0)], "not a positive number"),
    ("nan", [(nb201.arch_str(3), float("nan"))], "not a positive number"),
    ("text", [(nb201.arch_str(3), "fast")], "not a positive number"),
    ("missing_probes", [(nb201.arch_str(3), 3.0)], "probe cells"),
    ("only_probes", [(nb201.arch_str(i), 3.0) for i in evaluation.get_method("maple-x").probe_archs],
     "besides its 5 probes"),
])
def test_bad_samples_exit_2_with_one_line_and_no_file(files, capsys, case, rows, message):
    out = files / f"never_{case}.csv"
    samples = write_samples(files / f"{case}.csv", rows)
    assert run_cli(files, **{"--samples": samples, "--out": out}) == 2
    err = one_error_line(capsys)
    assert err.startswith("maplex predict: error:") and message in err, err
    assert not out.exists()


def test_bad_columns_in_samples(files, capsys):
    p = files / "cols.csv"
    pd.DataFrame({"arch": [nb201.arch_str(3)], "ms": [3.0]}).to_csv(p, index=False)
    assert run_cli(files, **{"--samples": p, "--out": files / "never_cols.csv"}) == 2
    assert "arch_str,latency_ms" in one_error_line(capsys)
    assert not (files / "never_cols.csv").exists()


def test_target_missing_from_devices_csv(files, capsys):
    devs = pd.read_csv(files / "devices.csv")
    devs[devs.device != EMB_TARGET].to_csv(files / "no_target.csv", index=False)
    out = files / "never_no_target.csv"
    assert run_cli(files, **{"--devices": files / "no_target.csv", "--out": out}) == 2
    assert "no NB201 row in the device table" in one_error_line(capsys)
    assert run_cli(files, **{"--target": "my_phone", "--out": out}) == 2
    assert "no NB201 row in the device table" in one_error_line(capsys)
    assert not out.exists()


def test_unknown_training_device(files, capsys):
    """A column of TRAIN.csv that DEVICES.csv does not describe."""
    devs = pd.read_csv(files / "devices.csv")
    devs[devs.device != "vcpu2_torch_t1_b1"].to_csv(files / "no_train_dev.csv", index=False)
    out = files / "never_unknown_dev.csv"
    assert run_cli(files, **{"--devices": files / "no_train_dev.csv", "--out": out}) == 2
    err = one_error_line(capsys)
    assert "unknown device" in err and "vcpu2_torch_t1_b1" in err
    assert not out.exists()


def test_target_in_training_table(files, capsys, emb):
    table, _ = emb
    data.write_latency_csv(table.take(data.POOL), files / "leaky.csv")
    assert run_cli(files, **{"--train": files / "leaky.csv", "--out": files / "never_leaky.csv"}) == 2
    assert "column of the training table" in one_error_line(capsys)
    assert not (files / "never_leaky.csv").exists()


def test_unknown_method_and_missing_file(files, capsys):
    assert run_cli(files, **{"--method": "maple-z", "--out": files / "never_c.csv"}) == 2
    assert "unknown method" in one_error_line(capsys)
    assert run_cli(files, **{"--train": files / "nope.csv", "--out": files / "never_d.csv"}) == 2
    assert "no latency file" in one_error_line(capsys)
    assert not (files / "never_c.csv").exists() and not (files / "never_d.csv").exists()


def test_bad_input_in_a_real_process(files):
    """The contract as a shell sees it: exit status 2, one stderr line, no traceback, no file."""
    samples = write_samples(files / "dup_proc.csv", [(nb201.arch_str(3), 3.0), (nb201.arch_str(3), 3.1)])
    out = files / "never_proc.csv"
    r = subprocess.run(CLI + predict_argv(files, **{"--samples": samples, "--out": out}), capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "more than once" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


# ---------------------------------------------------------------- predict on the public table

@needs_data
def test_closest_linear_needs_training_devices_on_every_cell(capsys, tmp_path):
    train = ["silver_4114", "gold_6240", "1080ti_1", "titanx_1", "titan_rtx_1"]
    table = data.load_nb201()
    data.write_latency_csv(table.select(train).take(data.POOL), tmp_path / "train.csv")
    data.load_devices().df.loc[train + ["gold_6226"]].reset_index().to_csv(tmp_path / "devices.csv", index=False)
    write_samples(tmp_path / "samples.csv", [(nb201.arch_str(i), table["gold_6226"].loc[i]) for i in (3, 250, 611)])
    argv = lambda train_csv, out: ["predict", "--train", str(train_csv), "--devices", str(tmp_path / "devices.csv"),
                                   "--target", "gold_6226", "--samples", str(tmp_path / "samples.csv"),
                                   "--method", "closest-linear", "--out", str(out)]
    assert main(argv(tmp_path / "train.csv", tmp_path / "x.csv")) == 2
    assert "closest-linear" in one_error_line(capsys)
    assert not (tmp_path / "x.csv").exists()
    data.write_latency_csv(table.select(train), tmp_path / "train_full.csv")
    assert main(argv(tmp_path / "train_full.csv", tmp_path / "y.csv")) == 0
    assert len(pd.read_csv(tmp_path / "y.csv")) == nb201.N_ARCHS


@needs_data
def test_evaluate_writes_results_and_a_summary_of_the_whole_folder(tmp_path, capsys):
    common = ["--protocol", "P-X6", "--k", "3", "--seeds", "2", "--targets", "gold_6226", "--workers", "1",
              "--out", str(tmp_path)]
    assert main(["evaluate", "--methods", "closest-linear", "flops-linear", *common]) == 0
    assert len(pd.read_csv(tmp_path / "results.csv")) == 4
    assert main(["evaluate", "--methods", "closest-linear", *common]) == 0  # nothing new to compute
    assert len(pd.read_csv(tmp_path / "results.csv")) == 4
    summary = (tmp_path / "summary_P-X6.md").read_text()
    assert "flops-linear" in summary and "closest-linear" in summary  # the folder's rows, not only this call's
    assert (tmp_path / "P-X6_per_device_k3.png").is_file()


# ---------------------------------------------------------------- whose fault: MaplexError or a bug

def test_a_bug_shows_its_traceback_and_bad_input_does_not(files, capsys, monkeypatch):
    import maplex.cli as cli
    monkeypatch.setattr(cli, "predict_device", lambda *a, **k: {}["a bug"])  # a KeyError that is not bad input
    args = predict_argv(files)
    with pytest.raises(KeyError):  # not turned into one line: the traceback reaches the user (exit status 1)
        main(args)
    monkeypatch.setattr(cli, "predict_device", lambda *a, **k: (_ for _ in ()).throw(data.DataError("bad input")))
    assert main(args) == 2 and one_error_line(capsys).endswith("error: bad input")


def test_a_bug_in_a_real_process_exits_1_with_a_traceback(tmp_path):
    code = ("import sys, maplex.cli as c; c.cmd_info = lambda args: 1 / 0; "
            "c.build_parser = (lambda b: lambda: (p := b(), p._subparsers._group_actions[0].choices['info']"
            ".set_defaults(func=c.cmd_info), p)[-1])(c.build_parser); sys.exit(c.main(['info']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" in r.stderr and "ZeroDivisionError" in r.stderr


def test_unreadable_samples_file_is_one_line(files, capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    assert main(predict_argv(files, **{"--samples": bad})) == 2
    assert "cannot read it as CSV" in one_error_line(capsys)


@pytest.mark.parametrize("case", ["cut short", "not gzip", "empty", "folder"])
def test_unreadable_train_or_devices_file_is_one_line(files, capsys, case):
    """A corrupt download or a wrong path given as --train or --devices: one line naming the file, no traceback."""
    good = (files / "train.csv").read_bytes()
    bad = files / f"bad_{case.replace(' ', '_')}.csv.gz"
    if case == "folder":
        bad.mkdir(exist_ok=True)
    else:
        bad.write_bytes({"cut short": gzip.compress(good)[:200], "not gzip": b"\x00\x01 not a gzip stream",
                         "empty": b""}[case])
    for option, message in (("--train", "cannot be read as CSV"), ("--devices", "cannot be read as CSV")):
        out = files / f"never_{option[2:]}_{case.replace(' ', '_')}.csv"
        assert run_cli(files, **{option: bad, "--out": out}) == 2
        line = one_error_line(capsys)
        assert str(bad) in line and (message in line or "is a folder" in line or "no latency file" in line)
        assert not out.exists()


def test_out_onto_the_samples_file_is_refused(files, capsys):
    samples = predict_argv(files)[predict_argv(files).index("--samples") + 1]
    before = Path(samples).read_bytes()
    assert run_cli(files, **{"--out": samples}) == 2
    assert "overwrite your measurements" in one_error_line(capsys)
    assert Path(samples).read_bytes() == before


def test_out_that_the_file_system_refuses_is_one_line(files, capsys, tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert run_cli(files, **{"--out": folder, "--method": "maplex"}) == 2  # fits, then cannot rename onto a folder
    assert "a_folder" in one_error_line(capsys)
    assert folder.is_dir() and not any(folder.iterdir())


@pytest.mark.parametrize("argv", [["--seeds", "0"], ["--k", "3", "0"], ["--seeds", "-2"], ["--workers", "0"]])
def test_evaluate_checks_counts_before_any_work(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--protocol", "P-X6", "--methods", "lut", "--out", str(tmp_path), *argv])
    assert e.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written, no lock left


def test_device_rows_of_other_search_spaces_are_skipped_and_said(files, capsys):
    devs = pd.read_csv(files / "devices.csv")
    devs["search_spaces"] = ["fbnet" if d == EMB_TARGET else "" for d in devs.device]  # blank: unknown, kept
    devs.to_csv(files / "fbnet_target.csv", index=False)
    assert run_cli(files, **{"--devices": files / "fbnet_target.csv", "--out": files / "never_fbnet.csv"}) == 2
    assert "search_spaces lacks nb201" in one_error_line(capsys)


def test_samples_errors_name_the_line_and_the_plain_value(files, capsys, tmp_path):
    good = nb201.arch_str(3)
    bad_arch = write_samples(tmp_path / "bad_arch.csv", [(good, 3.0), ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1"
                                                                       "|none~2|", 2.0)])
    assert main(predict_argv(files, **{"--samples": bad_arch})) == 2
    line = one_error_line(capsys)
    assert "bad_arch.csv, line 3" in line and "conv_5x5" in line
    negative = write_samples(tmp_path / "negative.csv", [(good, 3.0), (nb201.arch_str(4), -2.5)])
    assert main(predict_argv(files, **{"--samples": negative})) == 2
    line = one_error_line(capsys)
    assert "line 3: latency -2.5 of" in line and "np.float64" not in line
