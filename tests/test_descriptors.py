"""`maplex.descriptors`: the perf parser on recorded output, and every error path of the descriptors.

Needs no shared data: devices and latencies are small in-memory tables; perf output comes from
`tests/fixtures/perf/` (see its README.md for which files are real recordings).
"""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maplex import nb201
from maplex.data import POOL, DeviceTable, LatencyTable
from maplex.descriptors import (COUNTER_OPS, MAPLE_EVENTS, PROBE_CELLS, PROBES, CounterDescriptor, DescriptorError,
                                EdgeCounterDescriptor, PerfParseError, ProbeFingerprint, SpecDescriptor,
                                canonical_event, counter_table, descriptor_costs, descriptor_table, fingerprint,
                                get_descriptor, impute_spec, isolating_cells, join_features, encode,
                                normalise_counts, parse_perf_stat, parse_perf_table, probe_latencies)

PERF = Path(__file__).parent / 'fixtures' / 'perf'


def perf_text(name: str) -> str:
    return (PERF / name).read_text()


@pytest.fixture
def devices() -> DeviceTable:
    rows = [dict(device='gpu_a', **{'class': 'gpu'}, hardware='card A', batch_size=1, cores=3584, max_clock_ghz=1.6, tdp_w=250),
            dict(device='gpu_a256', **{'class': 'gpu'}, hardware='card A', batch_size=256, cores=3584, max_clock_ghz=1.6, tdp_w=250),
            dict(device='gpu_b', **{'class': 'gpu'}, hardware='card B', batch_size=1, cores=4608, max_clock_ghz=1.8, tdp_w=280),
            dict(device='gpu_x', **{'class': 'gpu'}, hardware='card X', batch_size=1, tdp_w=250),
            dict(device='cpu_a', **{'class': 'cpu'}, hardware='cpu A', cores=12, max_clock_ghz=3.7, tdp_w=125),
            dict(device='phone', **{'class': 'mobile'}, hardware='phone', cores=8, max_clock_ghz=2.4)]
    return DeviceTable(pd.DataFrame(rows))


@pytest.fixture
def latencies() -> LatencyTable:
    rng = np.random.default_rng(0)
    ms = pd.DataFrame({'gpu_a': rng.uniform(2, 20, len(POOL)), 'phone': rng.uniform(5, 50, len(POOL))},
                      index=pd.Index(list(POOL), name='arch_index'))
    return LatencyTable(ms)


def raises(exc, match: str):
    return pytest.raises(exc, match=re.escape(match))


# ---- perf stat -x, parser on recorded output

@pytest.mark.parametrize('op', COUNTER_OPS)
def test_vm_recordings_unsupported_are_nan_not_zero(op):
    values = parse_perf_stat(perf_text(f'vm_{op}.csv'))
    assert values[list(MAPLE_EVENTS)].isna().all()
    assert values['task-clock'] > 0 and values['cpu-migrations'] == 0.0  # software events count, real zeros stay 0


def test_vm_repeat_has_variance_column():
    table = parse_perf_table(perf_text('vm_repeat_r3.csv'))
    assert table.loc['task-clock', 'variance_pct'] == 1.59
    assert table.loc['task-clock', 'running_pct'] == 100.0
    assert table.loc['cycles', 'status'] == 'not supported'


def test_published_output_with_counters():
    values = parse_perf_stat(perf_text('published_hs_opt_handbook.csv'))
    assert values['instructions'] == 425064193324.0
    assert values['branch-instructions'] == 85795758030.0  # alias 'branches'
    assert not values.isna().any() and len(values) == 10  # the metric-only line is skipped


def test_handwritten_multiplexed_example():
    text = perf_text('handwritten_format_example.csv')
    assert 'NOT A MEASUREMENT' in text.splitlines()[0]
    values = parse_perf_stat(text)
    assert set(MAPLE_EVENTS) <= set(values.index)
    assert np.isnan(values['LLC-load-misses']) and values['cycles'] == 1503000000.0
    strict = parse_perf_stat(text, min_running_pct=30)
    assert np.isnan(strict['LLC-loads']) and not np.isnan(strict['cycles'])


def test_zero_running_share_is_missing():
    values = parse_perf_stat('0,,cycles,0,0.00,,\n5,,instructions,10,100.00,,')
    assert np.isnan(values['cycles']) and values['instructions'] == 5.0


def test_short_lines_and_other_separator():
    values = parse_perf_stat('12;;cycles\n3.5;msec;task-clock;100;100.00;;', sep=';')
    assert values.to_dict() == {'cycles': 12.0, 'task-clock': 3.5}


def test_canonical_event():
    assert canonical_event('cpu-cycles:u') == 'cycles'
    assert canonical_event(' LLC-loads:k ') == 'LLC-loads'


@pytest.mark.parametrize('text, match', [
    ('1,5;msec;task-clock;1500000;100,00;;', 'is not a plain number'),
    ('1e,,cycles,10,100.00,,', "value '1e' is not a plain number"),
    ('1_000,,cycles,10,100.00,,', "value '1_000' is not a plain number"),
    ('CPU0,123,,cycles,1000,100.00,,', 'no event name in field 3'),
    ('1.0012,20574191,,cycles,8013551506,100.00,0.003,GHz', 'interval (-I) and per-CPU (-A) output'),
    ('1,,cycles,10,100.00,,\n2,,cycles,10,100.00,,', "line 2: event 'cycles' already appeared on line 1"),
    ('1,,cycles:u,10,100.00,,\n2,,cycles:k,10,100.00,,', 'appear twice once modifiers are stripped'),
    ('# started on Mon\n\n', 'no counter lines'),
    ('', 'no counter lines'),
    ('cycles 123', 'expected value,unit,event'),
    ('1,,cycles,1.0%,10,100.00,1,x,y', 'more than perf stat -x prints'),
    ('1,,cycles,ten,100.00,,', "run time 'ten' is not a plain number"),
])
def test_parser_errors(text, match):
    with raises(PerfParseError, match):
        parse_perf_stat(text, sep=';' if ';' in text else ',')


def test_perf_parse_error_is_value_error():
    assert issubclass(PerfParseError, ValueError) and issubclass(DescriptorError, ValueError)


# ---- counters

def test_counter_table_and_normalisation():
    runs = {op: perf_text(f'vm_{op}.csv') for op in COUNTER_OPS}
    table = counter_table(runs, events=('context-switches',), duration_ms={'avg_pool_3x3': 100.0})
    assert table['duration_ms'].tolist() == [13.91, 51.07, 100.0]
    rates = normalise_counts(table, per='duration_ms')
    assert rates.loc['avg_pool_3x3', 'context-switches'] == pytest.approx(0.05)
    with raises(DescriptorError, "no column(s) ['cycles']"):
        normalise_counts(table, 'duration_ms', ['cycles'])


def test_counter_table_unknown_op():
    with raises(DescriptorError, "unknown operation 'conv_5x5'"):
        counter_table({'conv_5x5': perf_text('vm_nor_conv_1x1.csv')})


def _toy_counts(scale_time: float = 1.0) -> pd.DataFrame:
    counts = pd.DataFrame(1e7, index=list(COUNTER_OPS), columns=list(MAPLE_EVENTS))
    counts['instructions'] = 1e9
    counts['duration_ms'] = 10.0 * scale_time
    return counts


def test_counter_descriptors_known_answer(devices):
    counters = {'cpu_a': _toy_counts(), 'gpu_a': _toy_counts(2.0)}
    maple, edge = CounterDescriptor(counters), EdgeCounterDescriptor(counters)
    assert maple.n_probes == 0 and maple.n_runs == 3
    np.testing.assert_allclose(maple('cpu_a', devices), maple('gpu_a', devices))
    np.testing.assert_allclose(maple('cpu_a', devices)[0], np.log10(1 + 1e3 * 1e7 / 1e9), rtol=1e-6)  # cycles/kinst
    np.testing.assert_allclose(edge('cpu_a', devices) - edge('gpu_a', devices), np.log10(2), atol=1e-4)
    assert len(maple.feature_names()) == 27 and len(edge.feature_names()) == 30


def test_counter_descriptor_errors(devices):
    vm = counter_table({op: perf_text(f'vm_{op}.csv') for op in COUNTER_OPS})
    vm_devices = devices.add('vm', **{'class': 'cpu'})
    with raises(DescriptorError, "'vm' has no value for cycles, cache-references"):
        CounterDescriptor({'vm': vm})('vm', vm_devices)
    x = CounterDescriptor({'vm': vm}, allow_missing=True)('vm', vm_devices)
    assert x.shape == (54,) and x[:27].sum() == 0 and x[27:].sum() == 27
    with raises(DescriptorError, "no counters for 'cpu_a' (have: vm)"):
        CounterDescriptor({'vm': vm})('cpu_a', vm_devices)
    with raises(DescriptorError, "lack the operation(s) ['nor_conv_3x3']"):
        CounterDescriptor({'vm': vm.drop('nor_conv_3x3')})('vm', vm_devices)
    with raises(DescriptorError, 'events must include it'):
        CounterDescriptor({}, events=('cycles', 'branch-misses'))
    with raises(DescriptorError, "device 'nowhere' is not in the DeviceTable"):
        CounterDescriptor({'nowhere': vm})('nowhere', devices)


def test_zero_instructions_is_missing_not_infinite(devices):
    counts = _toy_counts()
    counts.loc['nor_conv_1x1', 'instructions'] = 0
    x = CounterDescriptor({'cpu_a': counts}, allow_missing=True)('cpu_a', devices)
    assert np.isfinite(x).all() and x[27:36].sum() == 9  # the whole nor_conv_1x1 row is flagged


# ---- probes and the fingerprint

def test_probes_are_declared_structurally():
    assert isolating_cells(POOL) == PROBE_CELLS
    assert PROBES == tuple(PROBE_CELLS.values()) and len(PROBES) <= 5
    assert all(i in POOL for i in PROBES)
    assert not any(nb201.is_zero_output(i) for i in PROBES)
    counts = nb201.op_counts(PROBES)
    assert np.linalg.matrix_rank(counts) == 5 and (np.diag(counts) == 5).all()


def test_fingerprint_is_scale_free():
    t = np.array([[3.0, 4.0, 9.0, 20.0, 6.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(fingerprint(t), fingerprint(t * 11.0))
    np.testing.assert_allclose(fingerprint(t).sum(axis=1), 0.0, atol=1e-12)


def test_probe_fingerprint(devices, latencies):
    p = ProbeFingerprint()
    x = p('gpu_a', devices, probe_latencies(latencies, 'gpu_a'))
    assert x.dtype == np.float32 and x.shape == (5,) and p.n_probes == 5
    np.testing.assert_allclose(x, fingerprint(latencies['gpu_a'].loc[list(PROBES)].to_numpy()), rtol=1e-6)
    extra = pd.concat([probe_latencies(latencies, 'gpu_a'), pd.Series({0: 1.0})])  # extra entries are ignored
    np.testing.assert_allclose(p('gpu_a', devices, extra), x)


@pytest.mark.parametrize('probes, match', [
    (None, "needs 'phone''s latency of arch indices [186, 465, 649, 138, 297]"),
    (pd.Series({186: 1.0, 465: 2.0}), 'lack arch indices [649, 138, 297]'),
    (pd.Series({**dict.fromkeys(PROBES, 2.0), 138: np.nan}),
     "probes holds an infinite, NaN or non-positive latency, nan at arch 138"),
    (pd.Series({**dict.fromkeys(PROBES, 2.0), 186: -1.0}), 'positive latency'),
    (pd.Series({**dict.fromkeys(PROBES, 2.0), 297: np.inf}), 'positive latency'),
    ([1.0, 2.0, 3.0, 4.0, 5.0], 'probes must be a pd.Series'),
])
def test_probe_errors(devices, probes, match):
    with raises(DescriptorError, match):
        ProbeFingerprint()('phone', devices, probes)


def test_probe_error_names_the_archs(devices):
    with pytest.raises(DescriptorError) as e:
        ProbeFingerprint()('phone', devices, pd.Series({186: 1.0}))
    assert nb201.arch_str(649) in str(e.value) and 'probe_latencies' in str(e.value)


def test_probe_construction_errors(latencies):
    with raises(DescriptorError, 'zero-output'):
        ProbeFingerprint((nb201.arch_index('|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'), 186))
    with raises(DescriptorError, 'at least 2 distinct'):
        ProbeFingerprint((186, 186))
    with raises(DescriptorError, 'lacks probe arch(s) [186, 465, 649, 138, 297]'):
        probe_latencies(LatencyTable(latencies.ms.iloc[:100].set_axis(pd.Index(range(900, 1000), name='arch_index'))), 'phone')


# ---- specs

def test_spec_imputation(devices):
    assert impute_spec('gpu_a', 'cores', devices) == (3584.0, False)
    assert impute_spec('gpu_x', 'cores', devices) == (4096.0, True)  # one vote per card: median(3584, 4608)
    assert impute_spec('phone', 'tdp_w', devices) == (250.0, True)  # no mobile TDP: all other hardware
    assert impute_spec('cpu_a', 'batch_size', devices) == (1.0, True)


def test_spec_descriptor(devices):
    s = SpecDescriptor()
    x = s('gpu_a256', devices)
    names = s.feature_names()
    assert len(x) == len(names) == 14
    assert x[names.index('log10 batch_size')] == pytest.approx(np.log10(256))
    assert x[names.index('class=gpu')] == 1 and x[names.index('cores missing')] == 0
    assert s('gpu_x', devices)[names.index('cores missing')] == 1


def test_spec_errors(devices):
    with raises(DescriptorError, "class 'tpu'; SpecDescriptor knows gpu, cpu"):
        SpecDescriptor()('t', devices.add('t', **{'class': 'tpu'}))
    blank = DeviceTable(pd.DataFrame([dict(device='a', **{'class': 'gpu'}), dict(device='b', **{'class': 'gpu'})]))
    with raises(DescriptorError, "no device in the table has 'cores'"):
        SpecDescriptor()('a', blank)
    with raises(DescriptorError, 'must be a maplex.data.DeviceTable'):
        SpecDescriptor()('gpu_a', devices.df)


# ---- kinds, costs, join

def test_get_descriptor_kinds(devices, latencies):
    assert get_descriptor('probe+spec').n_probes == 5
    assert len(get_descriptor('spec+probe')('phone', devices, probe_latencies(latencies, 'phone'))) == 19
    assert len(get_descriptor('none')('phone', devices)) == 0
    with raises(DescriptorError, "unknown descriptor kind 'fingerprint'; known kinds: none, spec, probe, counters, edge-counters"):
        get_descriptor('probe+fingerprint')
    with raises(DescriptorError, "no part of 'probe' takes the argument(s) ['allow_missing']"):
        get_descriptor('probe', allow_missing=True)
    with raises(DescriptorError, "device 'nope' is not in the DeviceTable"):
        get_descriptor('none')('nope', devices)


def test_descriptor_costs():
    costs = descriptor_costs()
    assert costs.loc['probe', 'n_probes'] == 5 and costs.loc['spec', 'target_measurements'] == 0
    assert costs.loc['counters', 'n_runs'] == len(COUNTER_OPS)


def test_descriptor_table(devices, latencies):
    table = descriptor_table(ProbeFingerprint(), ['gpu_a', 'phone'], devices, latencies)
    assert table.shape == (2, 5) and list(table.index) == ['gpu_a', 'phone']
    with raises(DescriptorError, 'needs'):
        descriptor_table(ProbeFingerprint(), ['gpu_a'], devices)  # no latencies given


def test_join_features():
    h = np.array([0.5, -1.0], dtype=np.float32)
    X = join_features(encode([0, 1, 2]), h)
    assert X.shape == (3, 26) and X.dtype == np.float32
    assert (X[:, 24:] == h).all() and (X[:, :24] == nb201.onehot([0, 1, 2])).all()
    assert join_features(encode([5], 'counts'), np.zeros(0)).shape == (1, 5)
    with raises(DescriptorError, 'use enc[None]'):
        join_features(encode([0])[0], h)
    with raises(DescriptorError, 'descriptor must be 1-D'):
        join_features(encode([0]), h[None])
    with raises(DescriptorError, 'non-finite values at positions [0]'):
        join_features(encode([0]), np.array([np.nan, 1.0]))
    with raises(DescriptorError, "unknown encoding 'graph'; known: onehot, counts"):
        encode([0], 'graph')
