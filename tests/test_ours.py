"""maplex's own predictor (lesson 75): known answers on synthetic pools, the per-fold floor, the inner study's blindness."""
import numpy as np
import pandas as pd
import pytest

from maplex import nb201
from maplex.data import LatencyTable
from maplex.descriptors import PROBES
from maplex.lut import lut_design
from maplex.ours import (FLOORS, MaplexPredictor, MaplexPredictorError, fit_closest, inner_study, pool_drift,
                         trust_weights)

POOL = np.arange(900)
RNG = np.random.default_rng(0)


def additive(const, costs, archs=POOL):
    "ms of an exactly additive device: const + sum of per-op edge costs (none = 0)."
    return lut_design(archs) @ np.r_[const, costs]


@pytest.fixture(scope="module")
def pool():
    "Six training devices on the pool: four additive ones and two that are not (an extra cost on conv-conv cells)."
    ids = nb201.op_ids(POOL)
    bump = 1.0 + 0.4 * ((ids == 3).sum(1) >= 3)  # a device-like non-additivity: many 3x3 convs get slower together
    cols = {f"add{i}": additive(1 + i, (0.2 * (i + 1), 0.5, 1.0 + 0.3 * i, 0.3)) for i in range(4)}
    cols.update({f"odd{i}": additive(2 + i, (0.3, 0.6, 1.2 + 0.2 * i, 0.4)) * bump for i in range(2)})
    return LatencyTable(pd.DataFrame(cols, index=pd.Index(POOL, name="arch_index")))


def measurements(col: pd.Series, k: int, seed: int = 0) -> pd.Series:
    cells = np.sort(np.random.default_rng(seed).choice(np.setdiff1d(POOL, PROBES), k, replace=False))
    return col.loc[np.r_[cells, list(PROBES)]]


def test_an_additive_target_trusts_the_table(pool):
    target = pd.Series(additive(1.5, (0.25, 0.55, 1.1, 0.35)), index=POOL)
    m = MaplexPredictor(floor=1e-6).fit(measurements(target, 5), train=pool)
    assert m.weights_["table"] > 0.95
    np.testing.assert_allclose(m.predict(POOL).to_numpy(), target.to_numpy(), rtol=0.02)


def test_a_scaled_copy_of_a_training_device_trusts_the_closest_fit(pool):
    target = 3.0 * pool["odd1"]  # not additive: the table is off on conv-heavy cells
    m = MaplexPredictor(floor=1e-6).fit(measurements(target, 10), train=pool.select(["add0", "add1", "odd1"]))
    assert m.closest_.device == "odd1" and m.weights_["closest"] > 0.9
    np.testing.assert_allclose(m.predict(POOL).to_numpy(), target.to_numpy(), rtol=0.01)


def test_prediction_is_a_series_indexed_by_arch_and_strings_work(pool):
    target = pd.Series(additive(1.5, (0.25, 0.55, 1.1, 0.35)), index=POOL)
    m = MaplexPredictor().fit(measurements(target, 3), train=pool)
    p = m.predict([nb201.arch_str(5), 7])
    assert p.name == "latency_ms" and p.index.name == "arch_index" and p.index.tolist() == [5, 7]


def test_cells_the_closest_device_lacks_fall_back_to_the_table(pool):
    target = pd.Series(additive(1.5, (0.25, 0.55, 1.1, 0.35)), index=POOL)
    m = MaplexPredictor().fit(measurements(target, 3), train=pool)
    far = np.array([12000, 15000])  # not in the training table
    np.testing.assert_allclose(m.predict(far).to_numpy(), m.table_.predict(far))


def test_weights_follow_the_errors_and_the_floor():
    errs = pd.DataFrame({"table": [0.01, -0.02], "closest": [0.3, 0.2]})
    sharp, soft = trust_weights(errs, FLOORS[0]), trust_weights(errs, 0.1 ** 2)
    assert sharp["table"] > soft["table"] > 0.5
    assert trust_weights(errs, float("inf")).tolist() == [0.5, 0.5]
    assert trust_weights(pd.DataFrame({"table": [5.0], "closest": [9.0]}))["table"] == pytest.approx(0.5)  # both clipped


def test_fit_closest_prefers_the_correlated_device(pool):
    target = 2.0 * pool["add2"].iloc[:20]
    assert fit_closest(pool, target).device == "add2"


def test_zero_output_samples_do_not_vote(pool):
    zero = np.flatnonzero(nb201.cost_table().zero_output.loc[POOL].to_numpy())[:2]
    target = pd.Series(additive(1.5, (0.25, 0.55, 1.1, 0.35)), index=POOL)
    target.loc[zero] = 0.01  # a runtime that prunes those cells
    live = [c for c in (100, 200, 300, 400) if c not in set(zero) | set(PROBES)][:3]
    measured = target.loc[np.r_[zero, live, list(PROBES)]]
    m = MaplexPredictor(floor=1e-6).fit(measured, train=pool)
    assert set(m.errors_.index) == set(live) and m.weights_["table"] > 0.95


def test_inner_study_reads_only_the_fold_devices_pool_cells(pool):
    # the selection code gets a table whose cells from 900 on, and whose held-out target, are all NaN
    ms = pd.concat([pool.ms, pd.DataFrame(np.nan, index=np.arange(900, 1200), columns=pool.devices)])
    ms["held_out_target"] = np.nan
    study = inner_study(ms, pool.devices, k=3, seeds=range(1))
    assert study.acc10.notna().all() and set(study.pseudo_target) == set(pool.devices)
    assert {f"floor {f:g}" for f in FLOORS} <= set(study.rule)


def test_the_closest_devices_drift_outside_the_pool_is_taken_off():
    cells = np.arange(2000)
    ms = pd.Series(additive(1.0, (0.2, 0.5, 1.0, 0.3), cells), index=cells)
    assert abs(pool_drift(ms)) < 1e-9  # an additive column does not drift
    shifted = ms * np.where(cells >= 900, 1.2, 1.0)  # measured 20 % slower outside the pool
    assert pool_drift(shifted) == pytest.approx(np.log(1.2))
    train = LatencyTable(pd.DataFrame({"d": shifted}, index=pd.Index(cells, name="arch_index")))
    target = 2.0 * ms  # the same device without the drift, twice as slow
    m = MaplexPredictor(floor=float("inf")).fit(measurements(target, 5), train=train)
    ln_c = m.closest_.slope * (np.log(shifted.loc[[1500]]) - m.drift_) + m.closest_.intercept
    assert np.exp(ln_c.iloc[0]) == pytest.approx(target.loc[1500], rel=1e-6)  # the closest fit without the drift
    assert MaplexPredictor(drift=False).fit(measurements(target, 5), train=train).drift_ == 0.0


@pytest.mark.parametrize("change, message", [
    (lambda m: m.drop(PROBES[0]), "probe cells"),
    (lambda m: m.loc[list(PROBES)], "k >= 1"),
    (lambda m: m * np.nan, "positive number of ms"),
    (lambda m: pd.concat([m, m.iloc[:1] * 2]), "twice with different latencies"),
    (lambda m: pd.concat([m, pd.Series([1.0], index=[14000])]), "no latency for the measured cells"),
])
def test_bad_input(pool, change, message):
    target = pd.Series(additive(1.5, (0.25, 0.55, 1.1, 0.35)), index=POOL)
    with pytest.raises(MaplexPredictorError, match=message):
        MaplexPredictor().fit(change(measurements(target, 3)), train=pool)


def test_target_in_training_table_and_not_fitted(pool):
    with pytest.raises(MaplexPredictorError, match="column of the training table"):
        MaplexPredictor().fit(measurements(pool["add0"], 3), train=pool, target="add0")
    with pytest.raises(MaplexPredictorError, match="not fitted"):
        MaplexPredictor().predict([0])
    with pytest.raises(MaplexPredictorError, match="floor must be"):
        MaplexPredictor(floor="auto")


@pytest.mark.parametrize("kwargs", [dict(ridge=float("nan")), dict(ridge=-1.0), dict(clip=-1.0), dict(clip="x"),
                                    dict(clip=float("inf"))])
def test_settings_are_checked(kwargs):
    with pytest.raises(MaplexPredictorError, match="ridge|clip"):
        MaplexPredictor(**kwargs)
