"""Error paths and exactness of `maplex.neighbourhoods` (lesson nbs/50_neighbourhoods.ipynb).

Most tests use small synthetic tables whose answer a brute-force loop computes; one test uses the real
latency table when MAPLEX_DATA points at it (skipped otherwise).
"""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maplex import nb201
from maplex.data import NB201_FILE, POOL, LatencyTable
from maplex.neighbourhoods import (COMBINES, NeighbourhoodError, combine_deviation, holdout_agreement,
                                   loo_agreement, neighbour_frame, neighbourhoods, zero_output_flags)


def brute_force(lat, refs, bound, combine, max_size, weights=None, q=0.8, candidates=None):
    "Neighbourhoods by a plain loop: combined deviation per candidate, sort by (deviation, index), filter, cap."
    n, d = lat.shape
    w = np.full(d, 1 / d) if weights is None else np.asarray(weights, float) / np.sum(weights)
    cand = np.arange(n) if candidates is None else np.unique(candidates)
    out = []
    for r in refs:
        rows = []
        for a in cand:
            if a == r: continue
            dev = np.abs(lat[a] / lat[r] - 1)
            if combine == 'mean': c = float(dev @ w)
            elif combine == 'all': c = dev[w > 0].max()
            else:
                qq = 0.5 if combine == 'median' else q
                o = np.argsort(dev)
                c = dev[o][np.searchsorted(np.cumsum(w[o]), qq - 1e-9)]
            if c <= bound: rows.append((c, a))
        out.append(np.array([a for _, a in sorted(rows)[:max_size]], dtype=np.int64))
    return out


@pytest.fixture(scope="module")
def lat():
    "60 synthetic archs x 4 devices: shared cost times device speed times noise, rounded so that ties occur."
    rng = np.random.default_rng(0)
    cost = rng.uniform(5, 15, 60)
    speed = np.array([1.0, 0.7, 1.8, 3.0])
    return np.round(cost[:, None] * speed * rng.lognormal(0, 0.03, (60, 4)), 1)  # (60, 4)


@pytest.mark.parametrize("combine", COMBINES)
@pytest.mark.parametrize("bound,max_size", [(0.02, 3), (0.05, 10), (np.inf, 5), (0.1, 100)])
def test_matches_brute_force(lat, combine, bound, max_size):
    refs = [0, 7, 33, 59]
    got = neighbourhoods(lat, refs, bound=bound, combine=combine, max_size=max_size, zero_output='mix')
    want = brute_force(lat, refs, bound, combine, max_size)
    for g, w in zip(got, want): np.testing.assert_array_equal(g, w)


def test_weights_candidates_and_chunks(lat):
    refs, w, cand = np.arange(0, 60, 5), [1.0, 0.0, 2.0, 1.0], np.arange(10, 50)
    for combine in COMBINES:
        want = brute_force(lat, refs, 0.08, combine, 6, weights=w, q=0.7, candidates=cand)
        for chunk_mb in (1e-6, 64.0):  # one reference per chunk, then all at once
            got = neighbourhoods(lat, refs, bound=0.08, combine=combine, max_size=6, weights=w, q=0.7,
                                 candidates=cand, zero_output='mix', chunk_mb=chunk_mb)
            for g, x in zip(got, want): np.testing.assert_array_equal(g, x)


def test_ties_go_to_lower_index():
    lat = np.array([[8.0], [10.0], [6.0], [10.0], [6.0], [9.0]])  # 1..4 are all exactly 25 % off arch 0
    assert neighbourhoods(lat, [0], bound=0.3, max_size=3, zero_output='mix')[0].tolist() == [5, 1, 2]


def test_inputs_agree_and_ref_excluded(lat):
    idx = np.arange(100, 160)
    df = pd.DataFrame(lat, index=pd.Index(idx, name='arch_index'), columns=list('abcd'))
    a = neighbourhoods(lat, [105, 120], index=idx, bound=0.1, zero_output='mix')
    b = neighbourhoods(df, [105, 120], bound=0.1, zero_output='mix')
    c = neighbourhoods(LatencyTable(df), [105, 120], bound=0.1, zero_output='mix')
    for x, y, z, r in zip(a, b, c, [105, 120]):
        np.testing.assert_array_equal(x, y); np.testing.assert_array_equal(x, z)
        assert r not in x and x.dtype == np.int64
    w = pd.Series({'d': 1.0, 'c': 2.0, 'b': 0.0, 'a': 1.0, 'unused': 5.0})  # aligned by name, extras ignored
    np.testing.assert_array_equal(neighbourhoods(df, [105], weights=w, zero_output='mix')[0],
                                  neighbourhoods(df, [105], weights=[1.0, 0.0, 2.0, 1.0], zero_output='mix')[0])


def test_arch_strings_as_refs(lat):
    s = nb201.arch_str(7)
    np.testing.assert_array_equal(neighbourhoods(lat, [s], zero_output='mix')[0],
                                  neighbourhoods(lat, [7], zero_output='mix')[0])


def test_frame_matches_neighbourhoods(lat):
    nbr = neighbourhoods(lat, [3, 4, 5], bound=0.1, zero_output='mix')
    f = neighbour_frame(lat, [3, 4, 5], bound=0.1, zero_output='mix')
    assert f.groupby('ref')['neighbour'].apply(list).to_dict() == {r: n.tolist() for r, n in zip([3, 4, 5], nbr) if len(n)}
    assert (f.groupby('ref')['deviation'].apply(lambda d: d.is_monotonic_increasing)).all()
    assert neighbour_frame(lat, [], zero_output='mix').empty


def test_zero_output_modes():
    zero = np.flatnonzero(zero_output_flags(np.arange(nb201.N_ARCHS)))
    normal = np.setdiff1d(np.arange(200), zero)[:20]
    idx = np.r_[zero[:5], normal]
    lat = np.full((len(idx), 2), 10.0)  # every cell equally fast: only the zero-output rule separates them
    z_ref, n_ref = int(zero[0]), int(normal[0])
    ex = neighbourhoods(lat, [z_ref, n_ref], index=idx, max_size=50)
    assert len(ex[0]) == 0 and not np.isin(ex[1], zero).any() and len(ex[1]) == 19
    sep = neighbourhoods(lat, [z_ref, n_ref], index=idx, max_size=50, zero_output='separate')
    assert set(sep[0]) == set(zero[1:5]) and not np.isin(sep[1], zero).any()
    mix = neighbourhoods(lat, [n_ref], index=idx, max_size=50, zero_output='mix')
    assert len(mix[0]) == len(idx) - 1


@pytest.mark.parametrize("kwargs,msg", [
    (dict(bound=0), "bound must be"), (dict(bound=-0.1), "bound must be"), (dict(bound=np.nan), "bound must be"),
    (dict(max_size=0), "max_size must be an int >= 1"), (dict(max_size=2.5), "max_size must be an int >= 1"),
    (dict(max_size=True), "max_size must be an int >= 1"), (dict(combine='max'), "unknown combine 'max'"),
    (dict(zero_output='drop'), "unknown zero_output 'drop'"), (dict(combine='quantile', q=0), "quantile q"),
    (dict(q=1.5), "quantile q"), (dict(chunk_mb=0), "chunk_mb must be > 0"),
    (dict(weights=[1.0, 2.0]), "need 4 device weights"), (dict(weights=[1.0, -1.0, 1.0, 1.0]), ">= 0"),
    (dict(weights=[0.0] * 4), "not all zero"), (dict(weights=pd.Series({'a': 1.0})), "need a table with device names"),
    (dict(candidates=[1, 999]), "1 candidates not in the training table"),
])
def test_bad_settings(lat, kwargs, msg):
    with pytest.raises(NeighbourhoodError, match=None) as e: neighbourhoods(lat, [0], **{'zero_output': 'mix', **kwargs})
    assert msg in str(e.value)


def test_bad_refs(lat):
    with pytest.raises(NeighbourhoodError, match="2 refs not in the training table"): neighbourhoods(lat, [0, 60, 61])
    with pytest.raises(NeighbourhoodError, match="int arch indices or arch strings"): neighbourhoods(lat, [0.5])
    with pytest.raises(nb201.ArchError): neighbourhoods(lat, ['|none~0|'])


@pytest.mark.parametrize("bad,msg", [(np.nan, "NaN"), (np.inf, "infinite"), (0.0, "zero or negative"),
                                     (-1.0, "zero or negative")])
def test_bad_latencies(lat, bad, msg):
    x = lat.copy(); x[4, 2] = bad
    with pytest.raises(NeighbourhoodError, match=msg) as e: neighbourhoods(x, [0], zero_output='mix')
    assert "column 2" in str(e.value) and "arch 4" in str(e.value)
    df = pd.DataFrame(x, columns=list('abcd'))
    with pytest.raises(NeighbourhoodError, match="on c "): neighbourhoods(df, [0], zero_output='mix')


def test_bad_tables(lat):
    cases = [(lat[:, :0], "no training devices"), (lat[:0], "no architectures"), (lat[:, 0], "2-D"),
             (pd.DataFrame({'a': ['x', 'y']}), "must be numbers")]
    for table, msg in cases:
        with pytest.raises(NeighbourhoodError, match=msg): neighbourhoods(table, [0], zero_output='mix')
    with pytest.raises(NeighbourhoodError, match="duplicate arch indices"):
        neighbourhoods(lat[:3], [0], index=[0, 1, 1], zero_output='mix')
    with pytest.raises(NeighbourhoodError, match="one int arch index per row"):
        neighbourhoods(lat[:3], [0], index=[0, 1], zero_output='mix')
    with pytest.raises(NeighbourhoodError, match="only for plain arrays"):
        neighbourhoods(pd.DataFrame(lat), [0], index=np.arange(60), zero_output='mix')
    with pytest.raises(NeighbourhoodError, match="zero_output='mix'"):  # not NB201 indices: the zero-output rule can't apply
        neighbourhoods(lat, [nb201.N_ARCHS], index=np.arange(nb201.N_ARCHS, nb201.N_ARCHS + 60))


def test_errors_are_value_errors():
    assert issubclass(NeighbourhoodError, ValueError)
    with pytest.raises(ValueError): combine_deviation(np.zeros((2, 3)), 'sum')


def test_agreement(lat):
    df = pd.DataFrame(lat, columns=list('abcd'))
    agr = holdout_agreement(df[['a', 'b', 'c']], df['d'], [0, 1, 2], bounds=(0.05, 0.1), max_sizes=(2, 5),
                            zero_output='mix')
    assert agr.shape == (4, 6) and (agr['mean_size'] <= agr['max_size']).all()
    size = agr.set_index(['bound', 'max_size'])['mean_size'].unstack()  # bound x max_size
    assert (size.diff(axis=0).fillna(0) >= 0).all().all() and (size.diff(axis=1).fillna(0) >= 0).all().all()
    with pytest.raises(NeighbourhoodError, match="held-out latencies lack"):
        holdout_agreement(df[['a', 'b', 'c']], df['d'].iloc[:10], [0, 1, 2], zero_output='mix')
    with pytest.raises(NeighbourhoodError, match="no references"):
        holdout_agreement(df[['a', 'b', 'c']], df['d'], [], zero_output='mix')
    loo = loo_agreement(df, [0, 1, 2], held='b', zero_output='mix')
    assert set(loo['held']) == {'b'}
    with pytest.raises(NeighbourhoodError, match="unknown held-out device"): loo_agreement(df, [0], held=['z'])


@pytest.fixture(scope="module")
def real():
    env = os.environ.get("MAPLEX_DATA")
    if not env or not (Path(env) / NB201_FILE).is_file(): pytest.skip("set MAPLEX_DATA to the shared data folder")
    from maplex.data import load_nb201
    return load_nb201()


def test_real_pool_matches_brute_force(real):
    train = real.select(['gold_6226', 'gold_6240', '1080ti_1', 'titanx_1', 'titan_rtx_1']).take(POOL)
    lat = train.ms.to_numpy()
    zero = zero_output_flags(train.archs)
    refs = np.flatnonzero(~zero)[[0, 100, 500]]
    got = neighbourhoods(train, refs)
    want = brute_force(lat, refs, 0.05, 'mean', 10 + 50)  # brute force has no zero-output rule: drop them afterwards
    for g, w in zip(got, want): np.testing.assert_array_equal(g, w[~zero[w]][:10])
