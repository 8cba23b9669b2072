"""Tests for maplex.help (HELP's pieces, its cache, and every error path) and maplex.helpexp (its experiment drivers).

Runs on a synthetic device pool (no data files needed): each device's latency is a known linear function of
the 24-value one-hot, so meta-training has something real to learn. Meta-training is tiny here (a few
episodes); the full run lives in the evaluation command.
"""
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from maplex import data, nb201
from maplex import help as H
from maplex import helpexp as HX
from maplex.evaluation import Task, fit_task

TINY = dict(episodes=4, eval_every=2, mc=2, hidden=16, tasks=3)
DEVICES = ["dev_a", "dev_b", "dev_c", "dev_d", "val_a", "target"]


@pytest.fixture(scope="module")
def table() -> data.LatencyTable:
    rng = np.random.default_rng(0)
    X = nb201.onehot(np.arange(nb201.N_ARCHS)).astype(float)  # (15625, 24)
    cols = {d: 1.0 + X @ rng.uniform(0.1, 2.0, X.shape[1]) for d in DEVICES}  # ms, all positive
    return data.LatencyTable(pd.DataFrame(cols, index=pd.Index(np.arange(nb201.N_ARCHS), name="arch_index")))


@pytest.fixture(scope="module")
def devices() -> data.DeviceTable:
    return data.DeviceTable(pd.DataFrame({"device": DEVICES, "class": "gpu"}))


def make(table, devices, samples=np.arange(10), probes=True, target="target") -> Task:
    train = [d for d in DEVICES if d != target]
    col = table[target]
    return Task(table.select(train), devices, target, col.loc[np.asarray(samples)],
                col.loc[list(H.HELP_REFERENCE)] if probes else None)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("help_cache")


# ---- pieces -------------------------------------------------------------------------------

def test_reference_cells_match_the_data_file():
    if not __import__("os").environ.get("MAPLEX_DATA"): pytest.skip("needs MAPLEX_DATA")
    assert H.HELP_REFERENCE == tuple(data.load_help_reference_archs())


def test_embedding_is_minmax_of_the_references(table):
    e = H.hardware_embedding(table["dev_a"])
    assert e.shape == (10,) and e.dtype == np.float64 and e.min() == 0 and e.max() == 1


def test_embedding_names_the_missing_cells(table):
    with pytest.raises(H.MissingReferencesError, match=r"missing \[1462\]") as err:
        H.hardware_embedding(table["dev_a"].drop(1462), device="dev_a")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    with pytest.raises(H.MissingReferencesError, match="probe_archs"):
        H.hardware_embedding(None)
    with pytest.raises(H.HelpError, match="constant"):
        H.hardware_embedding(pd.Series(2.0, index=H.HELP_REFERENCE))


def test_minmax_round_trip():
    y = np.array([3.0, 4.0, 9.0])
    z = H.minmax_scale(y, 3, 9)
    np.testing.assert_allclose([z.min(), z.max()], [0.05, 0.95])
    np.testing.assert_allclose(H.minmax_unscale(z, 3, 9), y)


def test_trim_drops_both_tails():
    s = pd.Series(np.arange(100.0), index=np.arange(100) + 1000)
    kept = H.trim_outliers(s)
    assert len(kept) == 80 and kept.min() == 1010 and kept.max() == 1089


def test_cell_graph():
    adj = pd.DataFrame(H.CELL_ADJ, index=H.NODES, columns=H.NODES)
    assert (adj.loc["global"] == 1).all() and (np.diag(H.CELL_ADJ) == 1).all()
    assert adj.loc["3<-1", "1<-0"] == 1 and adj.loc["3<-1", "2<-0"] == 0
    f = H.cell_features(["|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"])
    assert f.shape == (1, 9, 8)
    assert H.NODE_FEATS[int(f[0, 1].argmax())] == "nor_conv_3x3"
    assert H.NODE_FEATS[int(f[0, 6].argmax())] == "avg_pool_3x3"


@pytest.mark.parametrize("encoder", H.ENCODERS)
def test_net_shapes(encoder):
    net = H.HelpNet(encoder, hidden=16)
    out = net(H.arch_inputs([0, 1, 2, 3], encoder), torch.rand(10, dtype=torch.float64))
    assert out.shape == (4,)


@pytest.mark.parametrize("bad, match", [(dict(encoder="rnn"), "unknown encoder"), (dict(episodes=0), "episodes"),
                                        (dict(mc=1.5), "mc"), (dict(trim=0.5), "trim"), (dict(portion=0), "portion")])
def test_bad_config(bad, match):
    with pytest.raises(H.HelpError, match=match):
        H.HelpConfig(**bad)


def test_split_roles():
    assert H.split_roles(["a", "b", "titanx_1"]) == (["a", "b"], ["titanx_1"])
    assert H.split_roles(["a", "titanx_1"]) == (["a", "titanx_1"], [])  # too few would train: no validation
    assert H.split_roles(["a", "b"]) == (["a", "b"], [])


# ---- meta-training and its cache -------------------------------------------------------------

def test_meta_training_is_deterministic(table):
    cfg = H.HelpConfig(**TINY)
    a = H.meta_train(table, ["dev_a", "dev_b", "dev_c"], ["val_a"], cfg, seed=3)
    b = H.meta_train(table, ["dev_a", "dev_b", "dev_c"], ["val_a"], cfg, seed=3)
    c = H.meta_train(table, ["dev_a", "dev_b", "dev_c"], ["val_a"], cfg, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    assert len(a.info["history"]["episode"]) == 2 and a.info["best_episode"] in (2, 4)


def test_meta_training_errors(table):
    cfg = H.HelpConfig(**TINY)
    with pytest.raises(data.UnknownDeviceError, match="unknown device"):
        H.meta_train(table, ["dev_a", "no_such_device"], config=cfg)
    with pytest.raises(H.HelpError, match="both training and validation"):
        H.meta_train(table, ["dev_a", "dev_b"], ["dev_b"], cfg)
    with pytest.raises(H.HelpError, match="at least one training device"):
        H.meta_train(table, [], config=cfg)
    with pytest.raises(H.HelpError, match="pool/reference cells"):
        H.meta_train(table.take(np.arange(500)), ["dev_a"], config=cfg)


def test_cache_round_trip_and_hit(table, tmp_path, monkeypatch):
    cfg = H.HelpConfig(**TINY)
    first = H.pretrained(table, ["dev_a", "dev_b"], ["val_a"], cfg, seed=0, cache=tmp_path)
    key = H.cache_key(table, ["dev_a", "dev_b"], ["val_a"], cfg, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [key, f"{key}.lock"]
    assert sorted(p.name for p in (tmp_path / key).iterdir()) == ["config.json", "weights.pt"]
    monkeypatch.setattr(H, "meta_train", lambda *a, **k: pytest.fail("a cache hit must not meta-train"))
    second = H.pretrained(table, ["dev_a", "dev_b"], ["val_a"], cfg, seed=0, cache=tmp_path)
    assert all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), second.state_dict().values()))
    assert second.config == cfg and second.info["best_episode"] == first.info["best_episode"]
    state = torch.load(tmp_path / key / "weights.pt", weights_only=True)  # tensors only
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_cache_key_tracks_every_input(table):
    cfg = H.HelpConfig(**TINY)
    key = H.cache_key(table, ["dev_a"], ["val_a"], cfg, 0)
    assert key == H.cache_key(table, ["dev_a"], ["val_a"], cfg, 0)
    assert key != H.cache_key(table, ["dev_a"], ["val_a"], cfg, 1)
    assert key != H.cache_key(table, ["dev_a"], ["val_a"], H.HelpConfig(**{**TINY, "episodes": 5}), 0)
    assert key != H.cache_key(table, ["dev_a"], ["dev_b"], cfg, 0)
    ms = table.ms.copy(); ms.loc[5, "dev_a"] *= 1.01  # one pool latency changes
    assert key != H.cache_key(data.LatencyTable(ms), ["dev_a"], ["val_a"], cfg, 0)
    ms = table.ms.copy(); ms.loc[5000, "dev_a"] *= 1.01  # a test cell: meta-training never reads it
    assert key == H.cache_key(data.LatencyTable(ms), ["dev_a"], ["val_a"], cfg, 0)


# ---- the method -------------------------------------------------------------------------------

@pytest.mark.parametrize("denorm", H.DENORMS)
def test_help_fits_and_predicts(table, devices, cache, denorm):
    task = make(table, devices)
    m = fit_task(H.Help(cache=cache, denorm=denorm, valid_devices=["val_a"], **TINY), task, seed=1)
    pred = m.predict([900, 901, "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"])
    assert pred.shape == (3,) and np.isfinite(pred).all() and pred.name == "latency_ms"
    again = fit_task(H.Help(cache=cache, denorm=denorm, valid_devices=["val_a"], **TINY), task, seed=1)
    np.testing.assert_array_equal(again.predict([900, 901]), pred[:2])
    assert m.model_.info["valid_devices"] == ["val_a"]


def test_minmax_maps_the_samples_range_back(table, devices, cache):
    task = make(table, devices)
    m = fit_task(H.Help(cache=cache, denorm="minmax", valid_devices=["val_a"], **TINY), task)
    a, b = m.scale_
    lo, hi = task.samples.min(), task.samples.max()
    np.testing.assert_allclose([a * 0.05 + b, a * 0.95 + b], [lo, hi])


def test_training_devices_count_only_at_pool_and_reference_cells(table, devices, cache):
    task = make(table, devices)
    m1 = fit_task(H.Help(cache=cache, valid_devices=["val_a"], **TINY), task)
    ms = task.train.ms.copy(); ms.loc[5000:6000, "dev_a"] *= 3  # a training device's test cells change
    task2 = dataclasses.replace(task, train=data.LatencyTable(ms))
    m2 = fit_task(H.Help(cache=cache, valid_devices=["val_a"], **TINY), task2)
    np.testing.assert_array_equal(m1.predict([5000, 5500]), m2.predict([5000, 5500]))


def test_adaptation_errors(table, devices, cache):
    kw = dict(cache=cache, valid_devices=["val_a"], **TINY)
    with pytest.raises(H.MissingReferencesError, match="reference cells"):
        fit_task(H.Help(**kw), make(table, devices, probes=False))
    with pytest.raises(H.HelpError, match="at least 2"):
        fit_task(H.Help(**kw), make(table, devices, samples=[5]))
    zero = int(np.flatnonzero(nb201.cost_table().zero_output.to_numpy())[0])
    with pytest.raises(H.HelpError, match="at least 2.*got 1 of k = 2"):  # a zero-output sample is dropped
        fit_task(H.Help(**kw), make(table, devices, samples=[5, zero]))
    task = make(table, devices)
    flat_cells = [i for i in task.samples.index if i not in H.HELP_REFERENCE]  # a reference cell keeps its value
    flat = dataclasses.replace(task, samples=pd.Series(4.0, index=flat_cells))
    with pytest.raises(H.HelpError, match="same latency"):
        fit_task(H.Help(**kw), flat)
    with pytest.raises(H.HelpError, match="not fitted"):
        H.Help(**kw).predict([0])
    with pytest.raises(H.HelpError, match="denorm"):
        H.Help(denorm="log")


def test_compare_table3():
    rows = pd.DataFrame(dict(target=["gold_6226", "fpga", "gold_6226", "fpga"], seed=[0, 0, 1, 1],
                             help_spearman=[0.9, 0.8, 0.7, 0.6]))
    t = HX.compare_table3(rows)
    assert list(t.index) == ["gold_6226", "fpga", "mean"]
    assert t.loc["mean", "ours"] == pytest.approx(0.75) and t.loc["mean", "seeds"] == 2
    assert t.loc["mean", "published"] == pytest.approx((0.989 + 0.985) / 2)


def test_help_protocol_scores_on_real_data(tmp_path):
    if not __import__("os").environ.get("MAPLEX_DATA"): pytest.skip("needs MAPLEX_DATA")
    df = HX.help_protocol_scores(seeds=[0], draws=range(2), targets=["fpga"], cache=tmp_path, **TINY)
    assert df[["draw", "scaling"]].values.tolist() == [[0, "leaky"], [0, "support"], [1, "leaky"], [1, "support"]]
    assert (df.groupby("draw").mape.nunique() == 2).all()  # the two scalings map back to different ms


def test_experiment_drivers_live_above_the_method():
    "maplex.helpexp imports maplex.help, never the reverse, and the drivers live only in maplex.helpexp."
    assert "helpexp" not in Path(H.__file__).read_text()
    assert HX.Help is H.Help
    for name in ("validation_scores", "_meta_test_rows", "help_protocol_scores", "evaluate_help", "compare_table3",
                 "HELP_TABLE3"):
        assert hasattr(HX, name) and not hasattr(H, name), name
