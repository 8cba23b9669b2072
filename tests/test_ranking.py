"""Tests for maplex.ranking: correctness against scipy, shapes, and every error path.

Synthetic tables only, except the last test, which checks the real Spearman matrix against the file shipped beside
the data and is skipped when that data is not available.
"""
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from maplex import nb201
from maplex.data import DataError, DeviceTable, LatencyTable
from maplex.ranking import (GROUPS, METHODS, RankError, _correlate, _kendall_pairs, _kendall_scipy, closest_device,
                            device_groups, group_means, pick_study, rank_corr, sample_rank_corr, within_across)


def _scipy(method, x, y):
    "Reference value from scipy for one pair of 1-D arrays."
    if method == 'spearman': return stats.spearmanr(x, y).statistic
    if method == 'kendall': return stats.kendalltau(x, y).statistic
    if method == 'pearson': return stats.pearsonr(x, y).statistic
    return stats.pearsonr(np.log(x), np.log(y)).statistic


@pytest.fixture
def table():
    "900 pool archs x 4 devices: b = 2a exactly, c = a with noise, d unrelated."
    rng = np.random.default_rng(0)
    a = rng.uniform(2, 20, 900)
    ms = pd.DataFrame({'a': a, 'b': 2 * a, 'c': a * rng.uniform(0.7, 1.3, 900), 'd': rng.uniform(2, 20, 900)},
                      index=pd.Index(range(900), name='arch_index'))
    return LatencyTable(ms)


@pytest.mark.parametrize('method', METHODS)
def test_correlate_matches_scipy_with_ties_and_batches(method):
    rng = np.random.default_rng(1)
    a = rng.integers(1, 6, (7, 12, 3)).astype(float)   # (S, k, D) with many ties
    b = rng.integers(1, 6, (7, 12)).astype(float)
    got = _correlate(a, b, method)
    assert got.shape == (7, 3)
    want = [[_scipy(method, a[s, :, d], b[s]) for d in range(3)] for s in range(7)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_kendall_large_k_path_equals_pairs():
    rng = np.random.default_rng(2)
    a, b = rng.integers(1, 30, (100, 4)).astype(float), rng.integers(1, 30, 100).astype(float)
    np.testing.assert_allclose(_correlate(a, b, 'kendall'), _kendall_pairs(a, b), atol=1e-12)  # k > 64: scipy
    np.testing.assert_allclose(_kendall_scipy(a[None], b[None])[0], _kendall_pairs(a, b), atol=1e-12)


@pytest.mark.parametrize('method', METHODS)
def test_constant_side_gives_nan_not_spurious_one(method):
    a = np.array([[0.1, 1.0], [0.1, 2.0], [0.1, 3.0]])   # column 0 constant (mean is not exactly 0.1 in floats)
    assert np.isnan(_correlate(a, np.array([1.0, 2.0, 3.0]), method)[0])
    assert np.isnan(_correlate(a, np.array([5.0, 5.0, 5.0]), method)).all()


@pytest.mark.parametrize('method', METHODS)
def test_rank_corr_matrix(table, method):
    r = rank_corr(table, method)
    assert list(r.index) == list(r.columns) == ['a', 'b', 'c', 'd']
    np.testing.assert_allclose(np.diag(r), 1)
    np.testing.assert_allclose(r.to_numpy(), r.to_numpy().T)
    assert r.loc['a', 'b'] == pytest.approx(1)
    assert r.loc['a', 'c'] == pytest.approx(_scipy(method, table['a'], table['c']), abs=1e-12)


def test_rank_corr_accepts_frames(table):
    wide = table.to_frame()                              # arch_index, arch_str, devices
    np.testing.assert_allclose(rank_corr(wide).to_numpy(), rank_corr(table).to_numpy())
    np.testing.assert_allclose(rank_corr(table.ms).to_numpy(), rank_corr(table).to_numpy())


def test_rank_corr_errors(table):
    with pytest.raises(RankError, match='choose one of'): rank_corr(table, 'spearmanr')
    with pytest.raises(RankError, match='at least 2 architectures'): rank_corr(table.take([0]))
    with pytest.raises(RankError, match='expected a LatencyTable'): rank_corr(table.ms.to_numpy())
    with pytest.raises(DataError, match='NaN'): rank_corr(table.ms.assign(a=np.nan))


def test_sample_rank_corr_values(table):
    samples = table['a'].loc[[3, 10, 50, 400, 899]] * 3.0
    r = sample_rank_corr(table, samples, 'spearman')
    assert r.name == 'spearman' and list(r.index) == table.devices
    assert r['a'] == pytest.approx(1) and r['b'] == pytest.approx(1)
    for m in METHODS:
        want = _scipy(m, table['d'].loc[samples.index], samples)
        assert sample_rank_corr(table, samples, m)['d'] == pytest.approx(want, abs=1e-12)
    assert sample_rank_corr(table.ms, samples).equals(r)  # a plain frame works too


def test_sample_rank_corr_errors(table):
    s = table['a'].loc[[1, 2, 3]]
    with pytest.raises(RankError, match='at least 2 target samples, got 1'): sample_rank_corr(table, s.iloc[:1])
    with pytest.raises(RankError, match='got 0'): sample_rank_corr(table, s.iloc[:0])
    with pytest.raises(RankError, match='not rows of the training table'):
        sample_rank_corr(table, pd.Series([1.0, 2.0], index=[1, 5000]))
    with pytest.raises(RankError, match='integer arch_index'):
        sample_rank_corr(table, pd.Series([1.0, 2.0], index=[nb201.arch_str(1), nb201.arch_str(2)]))
    with pytest.raises(RankError, match='NaN'): sample_rank_corr(table, s.where(s.index != 2))
    with pytest.raises(RankError, match='non-positive'): sample_rank_corr(table, -s)
    with pytest.raises(RankError, match='infinite'): sample_rank_corr(table, s.replace(s.iloc[0], np.inf))
    with pytest.raises(RankError, match='more than once'): sample_rank_corr(table, pd.concat([s, s.iloc[:1]]))
    with pytest.raises(RankError, match='choose one of'): sample_rank_corr(table, s, 'rho')
    with pytest.raises(RankError, match='pd.Series'): sample_rank_corr(table, s.to_numpy())
    with pytest.raises(ValueError): sample_rank_corr(table, s.iloc[:1])   # RankError is a ValueError


def test_closest_device(table):
    s = table['a'].loc[[3, 10, 50]]
    assert closest_device(table.select(['c', 'd', 'b']), s) == 'b'          # exact multiple beats the noisy copy
    assert closest_device(table.select(['c', 'b']), s, 'spearman') == 'b'   # both rank 3 samples alike: tie -> log
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert closest_device(table.select(['d', 'b']), pd.Series([4.0, 4.0, 4.0], index=[3, 10, 50])) == 'd'
    assert any('undefined' in str(w.message) for w in caught)


def _devices():
    df = pd.DataFrame({'device': ['cpu_x', 'g256', 'npu', 'g1', 'phone', 'fp'],
                       'class': ['cpu', 'gpu', 'npu', 'gpu', 'mobile', 'fpga'],
                       'batch_size': [np.nan, 256, 1, 1, np.nan, 1]})
    return DeviceTable(df)


def test_device_groups_order():
    g = device_groups(_devices())
    assert list(g.index) == ['g1', 'g256', 'cpu_x', 'phone', 'fp', 'npu']   # GROUPS order, unknown class last
    assert g['g1'] == 'GPU b1' and g['npu'] == 'npu'
    assert set(g) - set(GROUPS) == {'npu'}
    assert list(device_groups(_devices(), ['phone', 'g1'])) == ['GPU b1', 'mobile']


def test_group_tables():
    names = ['g1', 'g2', 'c1', 'c2', 'x']
    groups = pd.Series(['G', 'G', 'C', 'C', 'X'], index=names)
    m = np.full((5, 5), 0.5)
    m[0, 1] = m[1, 0] = 0.9
    m[2, 3] = m[3, 2] = 0.7
    np.fill_diagonal(m, 1.0)
    c = pd.DataFrame(m, index=names, columns=names)
    wa = within_across(c, groups)
    assert wa.loc['G', 'within'] == pytest.approx(0.9) and wa.loc['G', 'across'] == pytest.approx(0.5)
    assert np.isnan(wa.loc['X', 'within'])
    assert wa.loc['all pairs', 'within'] == pytest.approx(0.8)
    assert wa.loc['all pairs', 'gap'] == pytest.approx(0.3)
    gm = group_means(c, groups)
    assert gm.loc['C', 'C'] == pytest.approx(0.7) and gm.loc['G', 'C'] == pytest.approx(0.5)
    with pytest.raises(RankError, match=r"\['x'\]"): within_across(c.drop(index='x', columns='x'), groups)


def test_pick_study(table):
    study = pick_study(table, ks=(3, 5), seeds=range(20), methods=('spearman', 'log_pearson'))
    assert len(study) == 4 * 2 * 2
    assert {'hit', 'near', 'regret', 'n_top', 'sd', 'err', 'undefined'} <= set(study.columns)
    row = study.query("target == 'a' and method == 'log_pearson'")
    assert (row['hit'] == 1).all() and (row['regret'] == 0).all()            # b = 2a is found from 3 samples
    assert study['hit'].between(0, 1).all() and (study['regret'] >= 0).all()
    with pytest.raises(RankError, match='need 2 <= k'): pick_study(table, ks=(1,), seeds=range(2))
    with pytest.raises(RankError, match='choose one of'): pick_study(table, methods=('tau',))
    with pytest.raises(RankError, match='not rows of `table`'): pick_study(table.take(range(100)), ks=(3,), seeds=range(2))
    with pytest.raises(RankError, match='>= 1 seed'): pick_study(table, seeds=[])
    with pytest.raises(RankError, match='>= 3 devices'): pick_study(table.select(['a', 'b']))


@pytest.mark.skipif(not os.environ.get('MAPLEX_DATA')
                    or not (Path(os.environ.get('MAPLEX_DATA', '.')) / 'nb201_spearman.csv').is_file(),
                    reason='needs MAPLEX_DATA with nb201_spearman.csv')
def test_real_spearman_matches_shipped_matrix():
    from maplex.data import load_nb201
    rho = rank_corr(load_nb201())
    ref = pd.read_csv(Path(os.environ['MAPLEX_DATA']) / 'nb201_spearman.csv', index_col='device')
    np.testing.assert_allclose(rho.to_numpy(), ref.loc[rho.index, rho.columns].to_numpy(), atol=1e-4)
