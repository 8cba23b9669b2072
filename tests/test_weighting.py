"""Tests for maplex.weighting: properties of the spec weights and every error path.

Uses a synthetic device table (no data files needed) plus, where noted, the device table
shipped with maplex (`load_devices()` falls back to maplex/assets/devices.csv).
"""
import numpy as np
import pandas as pd
import pytest

from maplex.data import DeviceTable, UnknownDeviceError, load_devices
from maplex.weighting import (SpecError, device_weight_matrix, distance_to_weight, sample_weights,
                              spec_distance, spec_features, spec_weights)


@pytest.fixture
def toy() -> DeviceTable:
    return DeviceTable(pd.DataFrame({
        "device": ["gpu_a", "gpu_b", "cpu_a", "cpu_b", "npu", "gpu_tdp_only"],
        "class": ["gpu", "gpu", "cpu", "cpu", "asic", "gpu"],
        "cores": [4000, 2000, 16, 8, np.nan, np.nan],
        "max_clock_ghz": [1.8, 1.6, 3.6, 3.0, np.nan, np.nan],
        "tdp_w": [250, 150, 125, 65, np.nan, 250]}))


TRAIN = ["gpu_b", "cpu_a", "cpu_b", "npu", "gpu_tdp_only"]


# ---- properties -------------------------------------------------------------------------

def test_weights_mean_one_and_order(toy):
    w = spec_weights("gpu_a", TRAIN, toy)
    assert list(w.index) == TRAIN
    assert w.mean() == pytest.approx(1.0)
    assert w["gpu_b"] > w["cpu_a"] > w["cpu_b"]
    assert w["npu"] == pytest.approx(1.0)  # nothing comparable -> neutral


def test_power_zero_is_uniform(toy):
    assert spec_weights("gpu_a", TRAIN, toy, power=0).tolist() == [1.0] * len(TRAIN)


def test_blank_target_gives_uniform_weights(toy):
    assert spec_weights("npu", ["gpu_a", "cpu_a"], toy).tolist() == [1.0, 1.0]


def test_damping_is_square_root_of_undamped_ratio(toy):
    train = ["gpu_b", "cpu_a", "cpu_b"]
    w1 = spec_weights("gpu_a", train, toy, power=1)
    wh = spec_weights("gpu_a", train, toy, power=0.5)
    assert wh["gpu_b"] / wh["cpu_b"] == pytest.approx(np.sqrt(w1["gpu_b"] / w1["cpu_b"]))


def test_identical_specs_finite():
    same = DeviceTable(pd.DataFrame({"device": ["gpu_a", "gpu_a2"], "class": ["gpu", "gpu"], "cores": [4000, 4000],
                                     "max_clock_ghz": [1.8, 1.8], "tdp_w": [250, 250]}))
    assert spec_distance("gpu_a", ["gpu_a2"], same)["gpu_a2"] == 0
    assert np.isfinite(spec_weights("gpu_a", ["gpu_a2"], same)).all()


def test_blank_dimension_rescaled(toy):
    # gpu_tdp_only is compared to gpu_a on TDP alone: distance = sqrt(3) * |z gap|, same class
    z = spec_features(toy, ["gpu_a", *TRAIN])
    gap = abs(z.loc["gpu_a", "tdp_w"] - z.loc["gpu_tdp_only", "tdp_w"])
    assert spec_distance("gpu_a", TRAIN, toy)["gpu_tdp_only"] == pytest.approx(np.sqrt(3) * gap)


def test_class_penalty_adds_in_quadrature(toy):
    d0 = spec_distance("gpu_a", ["cpu_a"], toy, class_penalty=0)["cpu_a"]
    d2 = spec_distance("gpu_a", ["cpu_a"], toy, class_penalty=2)["cpu_a"]
    assert d2 == pytest.approx(np.sqrt(d0**2 + 4))


def test_log_makes_ratios_equal(toy):
    raw = spec_features(toy, standardise=False)
    assert raw.loc["gpu_a", "cores"] - raw.loc["gpu_b", "cores"] == pytest.approx(np.log10(2))
    assert raw.loc["cpu_a", "cores"] - raw.loc["cpu_b", "cores"] == pytest.approx(np.log10(2))


def test_zscore_uses_only_the_pool(toy):
    z_all = spec_features(toy)
    z_pool = spec_features(toy, ["gpu_a", "cpu_a"])
    assert z_pool["cores"].tolist() == pytest.approx([1.0, -1.0])
    assert not np.allclose(z_all.loc[["gpu_a", "cpu_a"], "cores"], z_pool["cores"])


def test_weight_matrix_shape_and_rows(toy):
    W = device_weight_matrix(toy)
    assert W.shape == (6, 6)
    assert np.isnan(np.diag(W.to_numpy())).all()
    np.testing.assert_allclose(W.mean(axis=1), 1.0)


def test_weight_matrix_real_devices():
    devs = load_devices()
    W = device_weight_matrix(devs)
    assert W.shape == (len(devs), len(devs))
    assert W.loc["titan_rtx_1", "1080ti_1"] > W.loc["titan_rtx_1", "gold_6226"]
    assert W.loc["gold_6226", "gold_6240"] > W.loc["gold_6226", "1080ti_1"]


def test_sample_weights(toy):
    w = pd.Series({"a": 2.0, "b": 1.0})
    np.testing.assert_allclose(sample_weights(["a", "a", "a", "b"], w), np.array([2, 2, 2, 1]) / 1.75)
    np.testing.assert_allclose(sample_weights(np.array(["a", "b"]), w, normalise=False), [2.0, 1.0])


# ---- errors -----------------------------------------------------------------------------

def test_unknown_target(toy):
    with pytest.raises(UnknownDeviceError, match="target 'tpu' is not in the device table"):
        spec_weights("tpu", TRAIN, toy)


def test_unknown_training_device(toy):
    with pytest.raises(UnknownDeviceError, match=r"training device\(s\) \['tpu'\]"):
        spec_weights("gpu_a", ["gpu_b", "tpu"], toy)
    with pytest.raises(KeyError):  # UnknownDeviceError is also a KeyError
        spec_distance("gpu_a", ["tpu"], toy)


def test_empty_training_list(toy):
    with pytest.raises(SpecError, match="empty"):
        spec_weights("gpu_a", [], toy)


def test_target_in_training_list(toy):
    with pytest.raises(SpecError, match="also listed"):
        spec_weights("gpu_a", ["gpu_a", "gpu_b"], toy)


def test_duplicate_training_device(toy):
    with pytest.raises(SpecError, match="more than once"):
        spec_weights("gpu_a", ["gpu_b", "gpu_b"], toy)


def test_target_without_specs_when_required(toy):
    with pytest.raises(SpecError, match="no known spec"):
        spec_weights("npu", ["gpu_a"], toy, require_target_specs=True)
    spec_weights("gpu_tdp_only", ["gpu_a"], toy, require_target_specs=True)  # one known spec is enough


def test_not_a_device_table(toy):
    with pytest.raises(SpecError, match="DeviceTable"):
        spec_weights("gpu_a", ["gpu_b"], toy.df)
    with pytest.raises(SpecError, match="DeviceTable"):
        spec_features(toy.df)


@pytest.mark.parametrize("kwargs, match", [
    (dict(power=-0.5), "power"), (dict(power=float("inf")), "power"), (dict(power="half"), "power"),
    (dict(eps=0), "eps"), (dict(eps=-1), "eps"),
    (dict(class_penalty=-1), "class_penalty"), (dict(class_penalty=float("nan")), "class_penalty"),
    (dict(cols=()), "cols"), (dict(cols=("cores", "cores")), "cols"), (dict(cols=("hardware",)), "cols"),
    (dict(log_cols=("batch_size",)), "log_cols"),
])
def test_invalid_parameters(toy, kwargs, match):
    with pytest.raises(SpecError, match=match):
        spec_weights("gpu_a", ["gpu_b", "cpu_a"], toy, **kwargs)


def test_distance_to_weight_errors():
    with pytest.raises(SpecError, match=">= 0"):
        distance_to_weight([-1.0])
    with pytest.raises(SpecError, match="eps"):
        distance_to_weight([1.0], eps=0)


def test_weight_matrix_needs_two_devices(toy):
    with pytest.raises(SpecError, match="at least two"):
        device_weight_matrix(toy, ["gpu_a"])


@pytest.mark.parametrize("devs, weights, match", [
    ([], pd.Series({"a": 1.0}), "non-empty"),
    ([["a"]], pd.Series({"a": 1.0}), "1-d"),
    (["a"], {"a": 1.0}, "pandas Series"),
    (["a"], pd.Series([1.0, 2.0], index=["a", "a"]), "unique"),
    (["a"], pd.Series({"a": 0.0}), "> 0"),
    (["a"], pd.Series({"a": np.nan}), "> 0"),
])
def test_sample_weights_errors(devs, weights, match):
    with pytest.raises(SpecError, match=match):
        sample_weights(devs, weights)


def test_sample_weights_unknown_device():
    with pytest.raises(UnknownDeviceError, match=r"\['b'\]"):
        sample_weights(["a", "b"], pd.Series({"a": 1.0}))
