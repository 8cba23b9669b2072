"""Error paths and known-answer checks of `maplex.lut` (layer-wise latency tables and virtual labels)."""
import numpy as np
import pandas as pd
import pytest

from maplex.descriptors import PROBES
from maplex.lut import (STAGE_NAMES, LayerwiseLUT, LUTError, MissingProbesError, UnknownOpError, edge_cost, lut_design,
                        neighbourhood_pearson, solve_edge_costs, virtual_labels)
from maplex.nb201 import N_ARCHS, OPS, op_counts

ALL = np.arange(N_ARCHS)


@pytest.fixture
def stage_table() -> pd.DataFrame:
    "A known op x stage table (ms per op instance per stage)."
    return pd.DataFrame([[0.0, 0.0, 0.0], [0.01, 0.01, 0.01], [0.08, 0.06, 0.05], [0.30, 0.22, 0.18], [0.04, 0.03, 0.02]],
                        index=list(OPS), columns=list(STAGE_NAMES))


@pytest.fixture
def exact(stage_table) -> LayerwiseLUT:
    return LayerwiseLUT.from_op_latencies(stage_table, const_ms=2.0)


@pytest.fixture
def device(exact) -> pd.Series:
    "A noise-free synthetic device whose latency is exactly the layer-wise sum."
    return pd.Series(exact.predict(ALL), index=ALL)


# ------------------------------------------------------------------ the table
def test_edge_cost_folds_stages(stage_table):
    w = edge_cost(stage_table)
    assert w['nor_conv_3x3'] == pytest.approx(5 * (0.30 + 0.22 + 0.18))
    assert w.index.tolist() == list(OPS)


def test_edge_cost_missing_none_is_zero_other_ops_unknown(stage_table):
    w = edge_cost(stage_table.drop(index=['none', 'avg_pool_3x3']))
    assert w['none'] == 0.0 and np.isnan(w['avg_pool_3x3'])


@pytest.mark.parametrize('bad, msg', [
    (lambda t: t.rename(index={'avg_pool_3x3': 'max_pool'}), 'not NB201 ops'),
    (lambda t: t.iloc[:, :2], 'one column per stage'),
    (lambda t: -t, 'finite and >= 0'),
    (lambda t: t.replace(0.3, np.nan), 'finite and >= 0'),
])
def test_edge_cost_rejects_bad_tables(stage_table, bad, msg):
    with pytest.raises(LUTError, match=msg): edge_cost(bad(stage_table))


def test_predict_is_constant_plus_edge_costs(exact):
    counts = op_counts(ALL[:50]).astype(float)  # (50, 5)
    np.testing.assert_allclose(exact.predict(ALL[:50]), 2.0 + counts @ exact.edge_ms.to_numpy())


def test_predict_accepts_strings(exact):
    s = '|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|'
    assert exact.predict([s])[0] == pytest.approx(2.0 + exact.edge_ms['nor_conv_3x3'] + exact.edge_ms['skip_connect'])


def test_predict_names_the_op_the_table_lacks(stage_table):
    lut = LayerwiseLUT.from_op_latencies(stage_table.drop(index='avg_pool_3x3'))
    uniform_pool = '|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|'
    with pytest.raises(UnknownOpError, match=r"no latency for \['avg_pool_3x3'\]"): lut.predict([uniform_pool])
    uniform_conv = uniform_pool.replace('avg_pool_3x3', 'nor_conv_3x3')
    assert np.isfinite(lut.predict([uniform_conv])).all()  # cells without the missing op still work


def test_constructor_rejects_bad_input():
    with pytest.raises(LUTError, match='not NB201 ops'): LayerwiseLUT({'conv5x5': 1.0})
    with pytest.raises(LUTError, match='const_ms must be finite'): LayerwiseLUT({'skip_connect': 1.0}, const_ms=np.nan)
    with pytest.raises(LUTError, match='n_probes'): LayerwiseLUT({'skip_connect': 1.0}, n_probes=-1)


# ------------------------------------------------------------------ probes and fit
def test_probes_identify_the_table():
    assert np.linalg.matrix_rank(lut_design(list(PROBES))) == 5
    assert len(PROBES) == 5


def test_from_probes_recovers_exact_costs(exact, device):
    lut = LayerwiseLUT.from_probes(device)
    np.testing.assert_allclose(lut.edge_ms.to_numpy(), exact.edge_ms.to_numpy(), atol=1e-9)
    assert lut.const_ms == pytest.approx(2.0) and lut.n_probes == 5 and lut.source == 'probes'


def test_from_probes_reads_only_the_probes(device):
    only = device.loc[list(PROBES)]
    a, b = LayerwiseLUT.from_probes(only), LayerwiseLUT.from_probes(device)
    np.testing.assert_allclose(a.predict(ALL[:100]), b.predict(ALL[:100]))


def test_missing_probes_name_the_cells_to_measure(device):
    with pytest.raises(MissingProbesError, match=rf'arch indices \[{PROBES[1]}, {PROBES[3]}\]'):
        LayerwiseLUT.from_probes(device.drop([PROBES[1], PROBES[3]]))
    with pytest.raises(MissingProbesError, match=r'\|'):  # the message carries the arch strings too
        LayerwiseLUT.from_probes(device.drop(PROBES[0]))


@pytest.mark.parametrize('value', [0.0, -1.0, np.nan, np.inf])
def test_bad_probe_latencies(device, value):
    probes = device.loc[list(PROBES)].copy()
    probes.iloc[2] = value
    with pytest.raises(LUTError, match=rf'non-positive latency, \S+ at arch {PROBES[2]}:'):
        LayerwiseLUT.from_probes(probes)


def test_probe_listed_twice(device):
    only = device.loc[list(PROBES)]
    twice = pd.concat([only, only.iloc[:1]])  # a probe cell listed twice with one value counts once
    np.testing.assert_allclose(LayerwiseLUT.from_probes(twice).predict(ALL[:50]),
                               LayerwiseLUT.from_probes(only).predict(ALL[:50]))
    with pytest.raises(LUTError, match='twice with different latencies'):
        LayerwiseLUT.from_probes(pd.concat([only, only.iloc[:1] * 2]))


def test_from_probes_with_rank_deficient_cells(device):
    with pytest.raises(LUTError, match='pin down only'): LayerwiseLUT.from_probes(device, archs=[0, 1, 2, 3])


def test_fit_least_squares(exact, device):
    lut = LayerwiseLUT.fit(ALL[:900], device.iloc[:900].to_numpy(), n_probes=0)
    np.testing.assert_allclose(lut.edge_ms.to_numpy(), exact.edge_ms.to_numpy(), atol=1e-9)
    assert lut.n_probes == 0
    assert LayerwiseLUT.fit(ALL[:900], device.iloc[:900]).n_probes == 900  # conservative default


def test_fit_errors():
    with pytest.raises(LUTError, match='10 archs but 9 latencies'): solve_edge_costs(np.arange(10), np.ones(9))
    with pytest.raises(LUTError, match='pin down only'): LayerwiseLUT.fit([0, 1], [1.0, 2.0])
    with pytest.raises(LUTError, match='finite and > 0'): LayerwiseLUT.fit(np.arange(10), np.r_[np.ones(9), np.nan])


def test_gauge_none_is_zero_and_shift_invariance(exact):
    shifted = LayerwiseLUT(exact.edge_ms + 0.5, exact.const_ms - 6 * 0.5)  # the same predictions
    np.testing.assert_allclose(shifted.predict(ALL[:200]), exact.predict(ALL[:200]))
    refit = LayerwiseLUT.fit(ALL[:900], shifted.predict(ALL[:900]))
    assert refit.edge_ms['none'] == 0.0
    np.testing.assert_allclose(refit.edge_ms.to_numpy(), exact.edge_ms.to_numpy(), atol=1e-9)


# ------------------------------------------------------------------ neighbourhood correlation
def test_neighbourhood_pearson_matches_numpy():
    rng = np.random.default_rng(0)
    x = pd.Series(rng.random(40), index=np.arange(100, 140))
    y = pd.Series(x.to_numpy() + 0.3 * rng.random(40), index=x.index)
    refs, neigh = [100, 110, 120], [np.arange(101, 106), np.arange(111, 113), np.array([121])]
    out = neighbourhood_pearson(refs, neigh, x, y)
    g = np.r_[100, np.arange(101, 106)]
    assert out['pearson'].iloc[0] == pytest.approx(np.corrcoef(x[g], y[g])[0, 1])
    assert out['size'].tolist() == [6, 3, 2] and np.isnan(out['pearson'].iloc[2])


def test_neighbourhood_pearson_errors_and_constant_groups():
    x = pd.Series(1.0, index=range(10))
    y = pd.Series(np.arange(10.0), index=range(10))
    assert neighbourhood_pearson([0], [np.array([1, 2, 3])], x, y)['pearson'].isna().all()  # LUT constant: undefined
    with pytest.raises(LUTError, match='2 references but 1 neighbourhoods'): neighbourhood_pearson([0, 1], [np.array([2])], x, y)
    with pytest.raises(LUTError, match='cover every reference'): neighbourhood_pearson([0], [np.array([50])], x, y)


# ------------------------------------------------------------------ virtual labels
def test_virtual_labels_exact_on_an_additive_device(exact, device):
    "On a device that is exactly additive, anchoring on the reference reproduces the truth."
    refs = device.loc[[5, 50]]
    neigh = [np.array([6, 7, 8]), np.array([51, 52])]
    v = virtual_labels(refs, neigh, exact, center='ref')
    np.testing.assert_allclose(v.to_numpy(), device.loc[v.index].to_numpy())
    v = virtual_labels(refs, neigh, exact, form='ratio', center='ref')
    assert v.index.tolist() == [6, 7, 8, 51, 52]


def test_virtual_labels_paper_formula(exact):
    refs = pd.Series({100: 10.0})
    n = np.array([101, 102, 103])
    L = pd.Series(exact.predict([100, 101, 102, 103]), index=[100, 101, 102, 103])
    v = virtual_labels(refs, [n], exact)
    mu = L.mean()  # A_r includes a_r
    np.testing.assert_allclose(v.to_numpy(), (L[n] - mu + 10.0).to_numpy())
    assert v.name == 'virtual_ms' and v.index.name == 'arch_index'


def test_virtual_labels_overlap_measured_and_self(exact):
    refs = pd.Series({100: 10.0, 200: 12.0})
    neigh = [np.array([100, 300, 101]), np.array([300, 100, 101])]  # 100 lists itself; 100 is also 200's neighbour
    v = virtual_labels(refs, neigh, None)  # flat prior
    assert sorted(v.index) == [101, 300]  # measured archs keep their measurement
    assert v[300] == pytest.approx(11.0) and v[101] == pytest.approx(11.0)  # overlapping labels averaged
    a = virtual_labels(refs, neigh, exact)
    b = virtual_labels(refs, [np.array([300, 101]), neigh[1]], exact)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy())  # a ref listed in its own neighbourhood is not counted twice


def test_virtual_labels_drop_non_positive(exact):
    refs = pd.Series({1462: 0.5})  # uniform conv3x3 cell measured absurdly fast
    cheap = [i for i in range(2000) if exact.predict([i])[0] < 3.0][:3]
    v = virtual_labels(refs, [np.array(cheap)], exact, center='ref')
    assert (v > 0).all() and len(v) < len(cheap)


def test_virtual_labels_empty():
    v = virtual_labels(pd.Series({1: 1.0, 2: 2.0}), [np.array([], int), []], None)
    assert len(v) == 0 and v.dtype == float and v.index.name == 'arch_index'


def test_virtual_labels_errors(exact, stage_table):
    refs, neigh = pd.Series({100: 10.0, 200: 12.0}), [np.array([101]), np.array([201])]
    with pytest.raises(LUTError, match='2 references but 1 neighbourhoods'): virtual_labels(refs, neigh[:1], exact)
    with pytest.raises(LUTError, match="'additive' or 'ratio'"): virtual_labels(refs, neigh, exact, form='log')
    with pytest.raises(LUTError, match="'mean' or 'ref'"): virtual_labels(refs, neigh, exact, center='median')
    with pytest.raises(LUTError, match='non-positive latency, -1.0 at arch 200'):
        virtual_labels(pd.Series({100: 10.0, 200: -1.0}), neigh, exact)
    with pytest.raises(LUTError, match='repeats arch indices'):
        virtual_labels(pd.Series([1.0, 2.0], index=[100, 100]), neigh, exact)
    negative = LayerwiseLUT(exact.edge_ms, const_ms=-1000.0)
    with pytest.raises(LUTError, match="form='ratio' needs a positive"): virtual_labels(refs, neigh, negative, form='ratio')
    partial = LayerwiseLUT.from_op_latencies(stage_table.drop(index=list(OPS[1:])))
    with pytest.raises(UnknownOpError): virtual_labels(refs, neigh, partial)
