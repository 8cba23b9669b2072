"""Tests of maplex.yourdevice: the training pool and its fallback, the target's device row, interleaved measurement,
prediction of the whole space, the Pareto front and the budgeted pick (known answers on synthetic cells), and every
error path of the selection helpers."""
import numpy as np
import pandas as pd
import pytest
import torch

from maplex import nb201
from maplex import yourdevice as Y
from maplex.data import POOL, DataError, DeviceTable
from maplex.profile import ProfileError, parse_setting

ENV = dict(cpu_model='Test CPU', logical_cpus=4, cores=2, max_clock_ghz=3.2, clock_source='test', hypervisor='')


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture
def toy():
    "Six cells with a known front: 12 ties 11 on latency but scores less, 13 and 15 are dominated by 11 and 14."
    idx = pd.Index([10, 11, 12, 13, 14, 15], name='arch_index')
    return (pd.Series([1.0, 2.0, 2.0, 3.0, 4.0, 5.0], index=idx, name='pred_ms'),
            pd.Series([1.0, 3.0, 2.0, 2.5, 5.0, 4.0], index=idx, name='score'))


# --- the training pool -----------------------------------------------------------------------------------------------

def test_pool_falls_back_to_the_embedded_profile(monkeypatch, tmp_path):
    monkeypatch.setenv('MAPLEX_DATA', str(tmp_path))  # a folder without the public table: load_nb201 raises DataError
    train, devices, source = Y.training_pool()
    assert source.startswith('the embedded profile') and 'MAPLEX_DATA' in source
    assert list(train.archs) == list(POOL)
    assert devices.devices == train.devices and set(devices.classes) == {'cpu'}


def test_dead_cell_ratio_flags_a_device_that_removes_zero_output_cells(monkeypatch, tmp_path):
    monkeypatch.setenv('MAPLEX_DATA', str(tmp_path))
    train, _, _ = Y.training_pool()
    zero = nb201.cost_table()['zero_output'].loc[train.archs].to_numpy()
    ms = train.ms.copy()
    ms['pruner'] = np.where(zero, 1e-3, ms.iloc[:, 0])  # dead cells nearly free
    ratio = Y.dead_cell_ratio(type(train)(ms))
    assert ratio['pruner'] < Y.PRUNED_RATIO <= ratio.drop('pruner').min()
    with pytest.raises(DataError, match='both zero-output and other cells'):
        Y.dead_cell_ratio(train.take(np.flatnonzero(~zero)[:20]))


def test_pool_classes(monkeypatch, tmp_path):
    monkeypatch.setenv('MAPLEX_DATA', str(tmp_path))
    with pytest.raises(DataError, match=r"no device of class \['gpu'\]"):
        Y.training_pool(classes=['gpu'])


# --- the target's row -----------------------------------------------------------------------------------------------

def test_with_target_adds_a_row_from_the_environment():
    devices = DeviceTable(pd.DataFrame([{'device': 'other', 'class': 'gpu', 'cores': 100}]))
    table, target = Y.with_target(devices, 'torch-t2-b4', prefix='box', env=ENV)
    assert target == 'box_torch_t2_b4' and table.devices == ['other', target]
    row = table[target]
    assert (row['class'], row['cores'], row['batch_size'], row['max_clock_ghz']) == ('cpu', 2, 4, 3.2)
    assert np.isnan(row['tdp_w'])
    assert Y.with_target(devices, 'torch-t1-b1', env=ENV, tdp_w=65)[0]['mine_torch_t1_b1']['tdp_w'] == 65
    with pytest.raises(ProfileError, match='already a device'):
        Y.with_target(table, 'torch-t2-b4', prefix='box', env=ENV)
    with pytest.raises(ProfileError, match='prefix'):
        Y.with_target(devices, 'torch-t1-b1', prefix='a b', env=ENV)


# --- measuring and predicting ---------------------------------------------------------------------------------------

def test_measure_cells_is_a_series_by_arch_index_and_restores_threads():
    torch.set_num_threads(1)
    ms = Y.measure_cells([465, nb201.arch_str(186)], 'torch-t1-b1', warmup=0, repeats=2, stat='min_ms')
    assert list(ms.index) == [465, 186] and ms.index.name == 'arch_index'
    assert (ms > 0).all() and torch.get_num_threads() == 1


@pytest.mark.parametrize('kwargs, match', [
    (dict(archs=[1, 1]), 'without repeats'), (dict(archs=[]), 'non-empty'),
    (dict(archs=[1], stat='mean'), 'stat must be one of'), (dict(archs=[1], repeats=0), 'repeats >= 1'),
    (dict(archs=[1], setting='torch-x'), 'RUNTIME-tTHREADS-bBATCH')])
def test_measure_cells_refuses_bad_requests(kwargs, match):
    with pytest.raises(ProfileError, match=match):
        Y.measure_cells(**kwargs)


def test_predict_space_covers_every_cell():
    class Flops:  # a stand-in model: latency = FLOPs / 10
        def predict(self, archs): return nb201.cost_table()['flops_m'].loc[nb201.arch_indices(archs)].to_numpy() / 10
    pred = Y.predict_space(Flops())
    assert pred.shape == (nb201.N_ARCHS,) and pred.name == 'pred_ms' and (pred.index == np.arange(nb201.N_ARCHS)).all()
    assert Y.predict_space(Flops(), [5, nb201.arch_str(7)]).index.tolist() == [5, 7]


def test_plot_check_returns_a_figure():
    import matplotlib
    matplotlib.use('Agg')
    fig = Y.plot_check([1.0, 2.0, 4.0], [1.1, 2.0, 3.5], title='t')
    assert fig.axes[0].get_xscale() == 'log'


# --- Pareto front and budget ----------------------------------------------------------------------------------------

def test_pareto_front_known_answer(toy):
    ms, score = toy
    assert list(Y.pareto_front(ms, score)) == [10, 11, 14]
    assert list(Y.pareto_front(ms.sample(frac=1, random_state=0), score)) == [10, 11, 14]


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    idx = pd.Index(rng.choice(nb201.N_ARCHS, 300, replace=False))
    ms = pd.Series(rng.integers(1, 40, 300) / 4, index=idx)  # coarse values: many ties
    score = pd.Series(rng.integers(0, 30, 300).astype(float), index=idx)
    front = set(Y.pareto_front(ms, score))
    for a in idx:
        dominated = ((ms <= ms[a]) & (score >= score[a]) & ((ms < ms[a]) | (score > score[a]))).any()
        twin_first = ((ms == ms[a]) & (score == score[a]) & (idx < a)).any()
        assert (a in front) == (not dominated and not twin_first), a


def test_pick_under_budget_known_answers(toy):
    ms, score = toy
    assert list(Y.pick_under_budget(ms, 3.5, score).index) == [11, 10]
    assert list(Y.pick_under_budget(ms, 3.5, score, n=2, pareto=False).index) == [11, 13]
    assert list(Y.pick_under_budget(ms, 3.5, score, margin=0.5).index) == [10]
    picks = Y.pick_under_budget(ms, 10, 'flops_pruned_m', n=2)
    assert list(picks.columns) == ['arch_str', 'pred_ms', 'flops_pruned_m'] and len(picks) == 2
    assert picks['arch_str'].tolist() == [nb201.arch_str(a) for a in picks.index]
    assert (picks['pred_ms'] <= 10).all() and picks['flops_pruned_m'].is_monotonic_decreasing


@pytest.mark.parametrize('change, match', [
    (dict(budget_ms=0), 'budget_ms must be a positive'), (dict(budget_ms=-1.0), 'budget_ms must be a positive'),
    (dict(budget_ms=float('nan')), 'budget_ms must be a positive'), (dict(budget_ms=0.5), 'no cell is predicted under'),
    (dict(margin=1.0), 'margin must be a fraction'), (dict(n=0), 'n must be a positive integer'),
    (dict(proxy='accuracy'), "unknown proxy 'accuracy'")])
def test_pick_under_budget_errors(toy, change, match):
    ms, score = toy
    kwargs = {**dict(pred_ms=ms, budget_ms=3.0, proxy=score), **change}
    with pytest.raises(Y.SelectionError, match=match):
        Y.pick_under_budget(**kwargs)


def test_selection_refuses_bad_predictions(toy):
    ms, score = toy
    with pytest.raises(Y.SelectionError, match='1 NaN'):
        Y.pick_under_budget(ms.replace(4.0, np.nan), 3, score)
    with pytest.raises(Y.SelectionError, match='non-positive'):
        Y.pareto_front(ms.replace(1.0, 0.0), score)
    with pytest.raises(Y.SelectionError, match='cover different cells'):
        Y.pareto_front(ms, score.drop(15))
    with pytest.raises(Y.SelectionError, match='repeats arch'):
        Y.pareto_front(pd.Series([1.0, 2.0], index=[3, 3]), pd.Series([1.0, 2.0], index=[3, 3]))
    with pytest.raises(Y.SelectionError, match='pd.Series'):
        Y.pareto_front(ms.to_numpy(), score)
    with pytest.raises(Y.SelectionError, match='not NB201 indices'):
        Y.pick_under_budget(pd.Series([1.0], index=[99999]), 3)
