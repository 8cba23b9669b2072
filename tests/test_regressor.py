"""Tests for maplex.regressor: LatencyRegressor and MapleX, their determinism, save/load, and every error path.

A synthetic device pool (latency = constant + per-op costs, different per device) on the real NB201 pool
cells keeps these tests fast and independent of the data files; settings use few steps.
"""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from maplex import nb201
from maplex.data import DeviceTable, LatencyTable
from maplex.descriptors import PROBES
from maplex.core import MaplexError
from maplex.numerics import torch_threads
from maplex.regressor import (VARIANTS, ConfigError, LatencyRegressor, MapleX, NotFittedError, RegressorError,
                              TaskError, fit_calibration, mlp, variant)

POOL = np.arange(900)
FAST = dict(steps=60, num_threads=1)  # tiny settings: these tests check behaviour, not accuracy


def _synthetic_ms(const: float, costs: tuple[float, ...], archs=POOL) -> np.ndarray:
    "Additive latency: const + sum over edges of the op's cost (ms), positive for every cell."
    return const + nb201.op_counts(archs)[:, 1:] @ np.asarray(costs)  # counts of skip, 1x1, 3x3, pool


@pytest.fixture(scope="module")
def pool():
    "Four training devices and a target on the pool cells, with a device table."
    specs = {"gpu_a": (2.0, (0.05, 0.3, 0.5, 0.1), 4000, 1.8, 250), "gpu_b": (2.5, (0.06, 0.4, 0.7, 0.12), 3000, 1.6, 200),
             "cpu_a": (3.0, (0.1, 0.8, 2.0, 0.3), 16, 3.6, 125), "cpu_b": (4.0, (0.15, 1.0, 2.6, 0.4), 8, 3.0, 65),
             "target": (2.2, (0.055, 0.35, 0.6, 0.11), 3500, 1.7, 220)}
    ms = pd.DataFrame({d: _synthetic_ms(c, t) for d, (c, t, *_) in specs.items()}, index=pd.Index(POOL, name="arch_index"))
    devices = DeviceTable(pd.DataFrame({"device": list(specs), "class": ["gpu", "gpu", "cpu", "cpu", "gpu"],
                                        "cores": [s[2] for s in specs.values()], "max_clock_ghz": [s[3] for s in specs.values()],
                                        "tdp_w": [s[4] for s in specs.values()], "batch_size": [1, 1, 1, 1, 1]}))
    train = LatencyTable(ms.drop(columns="target"))
    target = ms["target"]
    samples = target.loc[[10, 200, 777]]
    probes = target.loc[list(PROBES)]
    return train, devices, samples, probes, target


def fit(model, train, devices, samples, probes=None, target="target"):
    "`model` fitted on the target's samples and probes, passed to `fit` as one Series as a caller does."
    measured = samples if probes is None else pd.concat([samples, probes])
    return model.fit(measured, train=train, devices=devices, target=target)


# ---- LatencyRegressor -------------------------------------------------------------------

def test_regressor_learns_and_is_deterministic():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (400, 6)).astype(np.float32)
    y = np.exp(X @ rng.normal(size=6) * 0.3 + 1)
    a = LatencyRegressor(steps=300, num_threads=1).fit(X, y, seed=3)
    b = LatencyRegressor(steps=300, num_threads=1).fit(X, y, seed=3)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert np.median(np.abs(a.predict(X) / y - 1)) < 0.05


def test_weights_pull_the_fit():
    X = np.ones((20, 2), np.float32)
    y = np.r_[np.full(10, 1.0), np.full(10, 4.0)]
    w = np.r_[np.full(10, 1.0), np.full(10, 9.0)]
    pred = LatencyRegressor(steps=200, num_threads=1).fit(X, y, w).predict(X[:1])[0]
    assert pred == pytest.approx(4 ** 0.9, rel=0.02)


def test_ms_transform_and_threads_restored():
    before = torch.get_num_threads()
    X = np.eye(4, dtype=np.float32).repeat(5, 0)
    reg = LatencyRegressor(transform="ms", steps=100, num_threads=1).fit(X, np.arange(1, 21, dtype=float))
    assert reg.predict(X).shape == (20,)
    assert torch.get_num_threads() == before
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_mlp_init_is_seeded():
    a, b = (mlp(5, (8,), torch.Generator().manual_seed(1)) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.fixture
def saved(tmp_path):
    X = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    reg = LatencyRegressor(steps=20, num_threads=1).fit(X, 1 + X.sum(1))
    return reg, X, reg.save(tmp_path / "reg")


def _edit(path, **changes):
    config = json.loads((path / "config.json").read_text())
    for k, v in changes.items():
        if v is None: config.pop(k)
        else: config[k] = v
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_save_load_roundtrip(saved):
    reg, X, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.pt"]
    np.testing.assert_array_equal(LatencyRegressor.load(path).predict(X), reg.predict(X))
    assert all(isinstance(v, torch.Tensor) for v in torch.load(path / "weights.pt", weights_only=True).values())


@pytest.mark.parametrize("changes, message", [
    (dict(version=99), "format version 99"),
    (dict(format="something.else"), "not a 'maplex.LatencyRegressor'"),
    (dict(extra=1), "unknown keys ['extra']"),
    (dict(steps=None), "lacks keys ['steps']"),
    (dict(n_features=7), "do not match"),
])
def test_load_refuses_bad_configs(saved, changes, message):
    with pytest.raises(ConfigError) as e:
        LatencyRegressor.load(_edit(saved[2], **changes))
    assert message in str(e.value)


def test_load_refuses_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="not a saved model"):
        LatencyRegressor.load(tmp_path)


class Payload:
    "An arbitrary object: loading with weights_only=True must refuse to unpickle it."


def test_load_refuses_pickled_code(saved):
    path = saved[2]
    torch.save({"payload": Payload()}, path / "weights.pt")
    with pytest.raises(ConfigError, match="torn or mixed"):  # not the weights this config was saved with
        LatencyRegressor.load(path)
    _edit(path, weights_sha256=hashlib.sha256((path / "weights.pt").read_bytes()).hexdigest())
    with pytest.raises(ConfigError, match="not unpickled"):  # even with a matching checksum, nothing is unpickled
        LatencyRegressor.load(path)


def test_load_refuses_torn_or_mixed_folders(saved, tmp_path):
    reg, X, path = saved
    other = LatencyRegressor(steps=20, num_threads=1).fit(X, 2 + X.sum(1), seed=1).save(tmp_path / "other")
    (path / "weights.pt").write_bytes((other / "weights.pt").read_bytes())  # a pair mixed from two saves
    with pytest.raises(ConfigError, match="torn or mixed"):
        LatencyRegressor.load(path)
    (path / "config.json").write_text((other / "config.json").read_text()[:30])  # a config cut short
    with pytest.raises(ConfigError, match="not valid JSON"):
        LatencyRegressor.load(path)
    assert issubclass(ConfigError, MaplexError)


def test_save_is_one_unit(saved, monkeypatch):
    reg, X, path = saved
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    def killed(*args, **kwargs): raise KeyboardInterrupt("killed while writing config.json")
    monkeypatch.setattr(json, "dumps", killed)  # the crash comes after weights.pt of the new save is written
    with pytest.raises(KeyboardInterrupt):
        reg.save(path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # the old model, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["reg"]  # no temporary folder left behind
    np.testing.assert_array_equal(LatencyRegressor.load(path).predict(X), reg.predict(X))


@pytest.mark.parametrize("call, message", [
    (lambda: LatencyRegressor().predict(np.ones((2, 3))), "not fitted"),
    (lambda: LatencyRegressor().save("unused"), "fit (or load)"),
    (lambda: LatencyRegressor().fit(np.ones(3), [1, 2, 3]), "2-D"),
    (lambda: LatencyRegressor().fit(np.ones((3, 2)), [1, 2]), "one value per row"),
    (lambda: LatencyRegressor().fit(np.ones((2, 2)), [1, np.nan]), "NaN"),
    (lambda: LatencyRegressor().fit(np.ones((2, 2)), [1, 0]), "> 0 ms"),
    (lambda: LatencyRegressor().fit(np.ones((2, 2)), [1, 2], w=[-1, 2]), "positive sum"),
    (lambda: LatencyRegressor().fit([[np.inf, 1.0]], [1.0]), "NaN or infinite"),
    (lambda: LatencyRegressor(transform="sqrt"), "transform"),
    (lambda: LatencyRegressor(hidden=(0,)), "hidden"),
    (lambda: LatencyRegressor(steps=0), "steps"),
])
def test_regressor_errors(call, message):
    with pytest.raises(RegressorError) as e:
        call()
    assert message in str(e.value)


def test_predict_checks_feature_width(saved):
    reg, X, _ = saved
    with pytest.raises(RegressorError, match="fitted on 3"):
        reg.predict(X[:, :2])


def test_not_fitted_is_attribute_error():
    with pytest.raises(AttributeError):
        LatencyRegressor().predict(np.ones((1, 1)))
    with pytest.raises(NotFittedError):
        MapleX().predict([0])


# ---- calibration ------------------------------------------------------------------------

def test_fit_calibration_recovers_a_line_and_shrinks():
    z = np.linspace(-1, 1, 6)
    assert fit_calibration(z, 2 * z - 0.5, np.ones(6), reg=0) == pytest.approx((2.0, -0.5))
    a, _ = fit_calibration(z, 2 * z - 0.5, np.ones(6), reg=100)
    assert 1 < a < 1.2


# ---- MapleX -----------------------------------------------------------------------------

def test_maplex_fits_a_synthetic_target(pool, tmp_path):
    train, devices, samples, probes, target = pool
    m = fit(MapleX(**FAST), train, devices, samples, probes)
    pred = m.predict(POOL).to_numpy()
    assert pred.shape == (900,) and np.isfinite(pred).all() and (pred > 0).all()
    assert np.median(np.abs(pred / target.to_numpy() - 1)) < 0.15
    assert m.device_weights_.mean() == pytest.approx(1.0)
    assert not m.virtual_.index.isin(samples.index).any()
    again = fit(MapleX(**FAST), train, devices, samples, probes)
    np.testing.assert_array_equal(again.predict(POOL), pred)  # deterministic under the seed
    loaded = MapleX.load(m.save(tmp_path / "mx"))
    np.testing.assert_array_equal(loaded.predict(POOL), pred)
    assert loaded.target_ == "target" and loaded.get_params() == m.get_params() and loaded != m


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_are_switches(pool, name):
    train, devices, samples, probes, _ = pool
    m = fit(variant(name, **FAST), train, devices, samples, probes)
    assert m.n_probes == len(PROBES)
    assert (len(m.virtual_) > 0) == m.virtual
    assert (m.device_weights_.nunique() > 1) == m.spec_weighting


def test_spec_descriptor_needs_no_probes(pool):
    train, devices, samples, probes, _ = pool
    m = MapleX(descriptor="spec", virtual=False, **FAST)
    assert m.n_probes == 0 and m.probe_archs == ()
    assert fit(m, train, devices, samples).predict([0, 1]).shape == (2,)
    no_probes = fit(MapleX(descriptor="spec", virtual=False, **FAST), train, devices, probes)
    assert no_probes.k_ == len(PROBES)  # without probe_archs, every measured cell is a sample


def test_one_sample_is_enough(pool):
    train, devices, samples, probes, _ = pool
    m = fit(MapleX(**FAST), train, devices, samples.iloc[:1], probes)
    assert np.isfinite(m.predict([5, 6])).all()


@pytest.mark.parametrize("mutate, message", [
    (lambda t, d, s, p: (t, d, "nowhere", s, p), "not in the device table"),
    (lambda t, d, s, p: (t, d, "target", s.iloc[:0], p), "k = 0"),
    (lambda t, d, s, p: (t, d, "target", pd.Series([3.0], index=[15625]), p), "outside the search space"),
    (lambda t, d, s, p: (t, d, "target", pd.Series([3.0], index=[-1]), p), "outside the search space"),
    (lambda t, d, s, p: (t, d, "target", s * np.nan, p), "NaN or non-positive"),
    (lambda t, d, s, p: (t, d, "target", s * 0, p), "NaN or non-positive"),
    (lambda t, d, s, p: (t, d, "target", pd.concat([s, s]), p), "twice"),
    (lambda t, d, s, p: (t, d, "target", s.to_numpy(), None), "pd.Series"),
    (lambda t, d, s, p: (t, d, "target", pd.Series([3.0], index=[5000]), p), "not rows of the training table"),
    (lambda t, d, s, p: (t, d, "target", s, None), "missing [138, 186, 297, 465, 649]"),
    (lambda t, d, s, p: (t, d, "target", s, p.iloc[1:]), "missing [186]"),
    (lambda t, d, s, p: (t, d, "target", s, pd.concat([p, p.iloc[:1] * 2])), "twice with different latencies"),
    (lambda t, d, s, p: (t.ms, d, "target", s, p), "LatencyTable"),
    (lambda t, d, s, p: (t, d.df, "target", s, p), "DeviceTable"),
    (lambda t, d, s, p: (LatencyTable(pd.concat([t.ms, p.rename("target").reindex(t.archs).fillna(1.0)], axis=1)),
                         d, "target", s, p), "leaks"),
])
def test_task_errors(pool, mutate, message):
    train, devices, samples, probes, _ = pool
    t, d, target, s, p = mutate(train, devices, samples, probes)
    with pytest.raises(TaskError) as e:
        fit(MapleX(**FAST), t, d, s, p, target=target)
    assert message in str(e.value)


def test_maplex_setting_errors():
    with pytest.raises(RegressorError, match="target_weight"):
        MapleX(target_weight=0)
    with pytest.raises(RegressorError, match="transform"):
        MapleX(transform="sqrt")
    with pytest.raises(ValueError, match="unknown descriptor kind"):
        MapleX(descriptor="tea-leaves")
    with pytest.raises(RegressorError, match="unknown variant"):
        variant("HELP")


def test_maplex_load_refuses_unknown_settings_and_versions(pool, tmp_path):
    train, devices, samples, probes, _ = pool
    path = fit(MapleX(**FAST), train, devices, samples, probes).save(tmp_path / "mx")
    config = json.loads((path / "config.json").read_text())
    _edit(path, settings={**config["settings"], "dropout": 0.1})
    with pytest.raises(ConfigError, match="unknown settings"):
        MapleX.load(path)
    _edit(path, settings=config["settings"], version=0)
    with pytest.raises(ConfigError, match="format version 0"):
        MapleX.load(path)
    # a folder saved by an earlier maplex (version 1: float32, no weights_sha256) is refused by its version
    old = {k: v for k, v in config.items() if k != "lut"}
    (path / "config.json").write_text(json.dumps({**old, "version": 1}))
    with pytest.raises(ConfigError, match="format version 1; this maplex reads version 3. Re-fit"):
        MapleX.load(path)
    with pytest.raises(NotFittedError):
        MapleX().save(tmp_path / "nothing")


def test_the_papers_rows_predict_with_the_regressor_alone(pool):
    # MAPLE, MAPLE-X1 and MAPLE-X: ln l = alpha f(x) + beta + m_t, nothing blended in
    train, devices, samples, probes, _ = pool
    cells = np.arange(0, 15625, 97)
    for name in VARIANTS:
        m = fit(variant(name, **FAST), train, devices, samples, probes)
        a, b = m.calibration_
        z = np.log(m.regressor_.predict(np.c_[nb201.onehot(cells), np.tile(m.descriptor_, (len(cells), 1))]))
        np.testing.assert_allclose(m.predict(cells), np.exp(a * z + b + m.level_), rtol=1e-12)
        assert not hasattr(m, "regressor_share") and not hasattr(m, "lut_")


def test_max_rows_caps_the_training_rows_and_draws_each_devices_own_cells(pool):
    from maplex.descriptors import get_descriptor
    from maplex.regressor import device_rows
    train, devices, samples, probes, _ = pool
    cells = np.r_[samples.index, list(PROBES)]
    weights = pd.Series(1.0, index=train.devices)
    X, y, w = device_rows(train, devices, get_descriptor("probe"), cells, weights, max_rows=4500)
    assert len(y) == min(4500 // len(train.devices), len(train.archs)) * len(train.devices)
    Xs, ys, _ = device_rows(train, devices, get_descriptor("probe"), cells, weights, max_rows=2 * len(train.devices))
    assert len(ys) == 2 * len(train.devices)  # two cells per device
    Xs2, _, _ = device_rows(train, devices, get_descriptor("probe"), cells, weights, max_rows=2 * len(train.devices))
    np.testing.assert_array_equal(Xs, Xs2)  # the same seed draws the same cells
    with pytest.raises(RegressorError, match="max_rows"):
        MapleX(max_rows=0)


@pytest.mark.parametrize("key, value", [("level", None), ("level", "abc"), ("calibration", "ab"),
                                        ("calibration", [1.0]), ("descriptor_values", "abc"), ("regressor", None)])
def test_maplex_load_refuses_values_of_the_wrong_kind(pool, tmp_path, key, value):
    train, devices, samples, probes, _ = pool
    path = fit(MapleX(**FAST), train, devices, samples, probes).save(tmp_path / "mx")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, key: value}))  # None is written as null
    with pytest.raises(ConfigError, match="wrong kind"):
        MapleX.load(path)


def test_maplex_predicts_nothing_for_no_archs(pool):
    train, devices, samples, probes, _ = pool
    m = fit(MapleX(**FAST), train, devices, samples, probes)
    empty = m.predict([])
    assert empty.shape == (0,) and empty.name == "latency_ms" and empty.index.name == "arch_index"


# ---- the scikit-learn-style contract ----------------------------------------------------

def test_two_fitted_models_are_not_equal_and_are_hashable(pool):
    train, devices, samples, probes, target = pool
    a = fit(MapleX(**FAST), train, devices, samples, probes)
    b = fit(MapleX(**FAST), train.select(["gpu_a", "gpu_b"]), devices, samples, probes)  # same settings, other data
    assert a != b and a == a and a.get_params() == b.get_params()  # equality is identity
    assert len({a, b, a}) == 2  # hashable, by identity
    assert repr(a) == "MapleX('MAPLE-X', steps=60, num_threads=1; fitted on 'target')"
    assert repr(variant("MAPLE", seed=3)) == "MapleX('MAPLE', seed=3; not fitted)"


def test_get_params_set_params_round_trip():
    from maplex.regressor import MapleXSettings
    m = variant("MAPLE-X1", seed=3, hidden=[8])
    params = m.get_params()
    assert params["seed"] == 3 and params["virtual"] and not params["spec_weighting"] and params["hidden"] == (8,)
    assert MapleX(**params).get_params() == params  # a copy through the dict
    assert MapleX(MapleXSettings(**params)).get_params() == params  # or through the settings object
    assert m.set_params(seed=4, max_size=10) is m
    assert (m.seed, m.max_size, m.get_params()["seed"]) == (4, 10, 4)
    assert m.set_params(**params).get_params() == params  # and back
    with pytest.raises(ConfigError, match=r"unknown MapleX settings \['dropout'\]"):
        m.set_params(dropout=0.5)
    with pytest.raises(ConfigError, match="unknown MapleX settings"):
        MapleX(dropout=0.5)
    with pytest.raises(RegressorError, match="target_weight"):
        m.set_params(target_weight=0)  # values are checked as in the constructor
    with pytest.raises(AttributeError, match=r"set_params\(seed=...\)"):
        m.seed = 5
    assert m.seed == 3 and not hasattr(m, "regressor_") and not hasattr(m, "regressor")


def test_predict_returns_a_named_series(pool):
    train, devices, samples, probes, _ = pool
    m = fit(MapleX(**FAST), train, devices, samples, probes)
    p = m.predict([7, nb201.arch_str(5), 12345])
    assert isinstance(p, pd.Series) and p.name == "latency_ms" and p.index.name == "arch_index"
    assert p.index.tolist() == [7, 5, 12345]
    assert m.target_ == "target" and m.k_ == 3 and m.regressor_.net is not None


# Predictions of the old two-argument path, fit(train, devices, "target", samples, probes), recorded before `fit`
# took one Series: the split by probe_archs must give the same numbers, also when a sample is a probe cell
# (listed twice, as the evaluation passes it: it counts as a sample and as a probe, as it did).
OLD_PATH = {(10, 200, 777): [3.0397216650032117, 3.5428923189918415, 2.869453520688479],
            (10, 649, 777): [3.1087784822384954, 3.6387172790976705, 2.909072313103643]}


@pytest.mark.parametrize("cells", list(OLD_PATH))
def test_fit_splits_measured_into_samples_and_probes_as_before(pool, cells):
    train, devices, _, probes, target = pool
    m = fit(MapleX(**FAST), train, devices, target.loc[list(cells)], probes)
    np.testing.assert_allclose(m.predict([0, 5, 12345]).to_numpy(), OLD_PATH[cells], rtol=1e-9)
    assert m.k_ == 3  # a probe cell listed twice is a sample too


def test_plumbing_names_stay_importable_from_the_regressor():
    "Errors, input checks and the saved-model format live in maplex.modelio (appendix A8); maplex.regressor re-exports them."
    from maplex import modelio, regressor
    for name in ("RegressorError", "NotFittedError", "ConfigError", "TaskError", "FORMAT_VERSION", "read_model",
                 "write_model"):
        assert getattr(regressor, name) is getattr(modelio, name)


def test_network_names_stay_importable_from_the_regressor():
    "The MLP, its trainer and its saved files live in maplex.mlp (appendix A14); maplex.regressor re-exports them."
    from maplex import mlp, regressor
    for name in ("mlp", "train_full_batch", "ROW_BLOCK", "RegressorFiles"):
        assert getattr(regressor, name) is getattr(mlp, name)
    assert issubclass(regressor.LatencyRegressor, mlp.RegressorFiles)


def test_a_descriptor_object_fits_as_its_name(pool, tmp_path):
    from maplex.descriptors import SpecDescriptor
    train, devices, samples, probes, _ = pool
    by_name = fit(MapleX(descriptor="spec", **FAST), train, devices, samples, probes)
    by_object = fit(MapleX(descriptor=SpecDescriptor(), **FAST), train, devices, samples, probes)
    np.testing.assert_array_equal(by_object.predict([5, 600]), by_name.predict([5, 600]))
    with pytest.raises(RegressorError, match="cannot be saved; name a descriptor kind"):
        by_object.save(tmp_path / "m")  # its arguments are not plain settings
    assert (by_object.name, MapleX(virtual=False, spec_weighting=False).name) == ("maple-x", "maple")
