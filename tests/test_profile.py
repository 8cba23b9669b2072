"""Tests of maplex.profile: the torch network, timing statistics, settings, environment parsing, perf records,
resumption after an interruption (including a row cut off by a kill), the optional ONNX path and the embedded dataset.
Parts live in maplex.machine and maplex.profilefiles (appendices A10, A11); maplex.profile re-exports them."""
import collections
import gzip
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from maplex import machine, nb201, profile as P
from maplex.data import POOL, DeviceTable, LatencyTable, load_devices, read_latency_csv
from maplex.descriptors import PROBES
from maplex.lut import LayerwiseLUT

HAS_ORT = all(__import__('importlib').util.find_spec(m) is not None for m in ('onnxruntime', 'onnx'))
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime/onnx not installed (pip install 'maplex[onnx]')")


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _session(model_bytes):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model_bytes, opts, providers=['CPUExecutionProvider'])


# --- the network -------------------------------------------------------------------------------------------------

def test_costs_match_analytic_counts_for_many_cells():
    cells = np.r_[list(PROBES), np.random.default_rng(1).choice(nb201.N_ARCHS, 60, replace=False)]
    counted = np.array([P.count_costs(P.build_net(int(a))) for a in cells])
    flops, params = nb201.flops_params(cells)
    np.testing.assert_allclose(counted[:, 0], flops, rtol=0, atol=1e-9)
    np.testing.assert_allclose(counted[:, 1], params, rtol=0, atol=1e-9)


def test_network_accepts_strings_and_rejects_bad_archs():
    s = nb201.arch_str(77)
    assert P.build_net(s).arch == s == P.build_net(77).arch
    with pytest.raises(nb201.ArchError):
        P.build_net(nb201.N_ARCHS)
    with pytest.raises(P.ProfileError, match="unknown op 'conv'"):
        P.make_op('conv', 16)


def test_zero_op_outputs_zero_and_cells_without_path_give_constant_output():
    zero_cell = next(a for a in range(200) if nb201.is_zero_output(a))
    net = P.build_net(zero_cell)
    x = P.make_input((3, *P.INPUT_SHAPE))
    with torch.inference_mode():
        y = net(x)
    torch.testing.assert_close(y[0], y[1])  # the prediction no longer depends on the image


# --- ONNX (optional) ---------------------------------------------------------------------------------------------

@needs_ort
@pytest.mark.parametrize('arch', [0, 138, 186, 297, 649, 9999])
def test_onnx_graph_matches_torch(arch):
    net, x = P.build_net(arch), P.make_input((4, *P.INPUT_SHAPE))
    with torch.inference_mode():
        want = net(x).numpy()
    got = _session(P.to_onnx(net)).run(None, {'x': x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


@needs_ort
def test_onnx_single_ops_and_skeleton_run():
    for op in nb201.OPS:
        m, x = P.make_op(op, 32).eval(), P.make_input((2, 32, 16, 16))
        stats = P.measure('ort', m, x, 1, warmup=1, repeats=2, number=2)
        assert stats['median_ms'] > 0
    assert P.measure('ort', P.build_net(None), P.make_input((1, *P.INPUT_SHAPE)), 1, 0, 1)['n'] == 1


def test_missing_onnxruntime_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # import onnxruntime -> ImportError
    with pytest.raises(P.RuntimeMissingError, match=r"pip install 'maplex\[onnx\]'"):
        P.RUNTIMES['ort'].version()
    with pytest.raises(P.RuntimeMissingError):
        P.profile_device('unused', settings=['ort-t1-b1'], archs=[0])  # fails before creating anything
    assert not __import__('os').path.exists('unused')


# --- timing ------------------------------------------------------------------------------------------------------

def test_timing_stats_on_synthetic_timings():
    s = P.timing_stats([5.0] * 9)
    assert (s['median_ms'], s['iqr_ms'], s['mad_ms'], s['rel_iqr'], s['noisy']) == (5.0, 0.0, 0.0, 0.0, False)
    rng = np.random.default_rng(0)
    t = 10 + rng.normal(0, 0.1, 101)
    t[:10] += 40  # 10 % of runs hit by another process
    s = P.timing_stats(t)
    assert abs(s['median_ms'] - 10) < 0.1 and abs(s['trimmed_mean_ms'] - 10) < 0.1 and np.mean(t) > 13
    assert not s['noisy']
    s = P.timing_stats([1, 1, 1, 2, 2, 2, 2, 2])
    assert s['noisy'] and s['rel_iqr'] == pytest.approx(0.5)
    for bad in ([], [1.0, np.nan], [0.0, 1.0], [1.0, -1.0]):
        with pytest.raises(P.ProfileError, match='positive finite'):
            P.timing_stats(bad)


def test_time_callable_counts_calls():
    calls = []
    times = P.time_callable(lambda: calls.append(1), warmup=3, repeats=4, number=5)
    assert len(times) == 4 and len(calls) == 3 + 4 * 5 and (times > 0).all()
    with pytest.raises(P.ProfileError, match='number >= 1'):
        P.time_callable(lambda: None, number=0)


# --- settings and environment ------------------------------------------------------------------------------------

@pytest.mark.parametrize('text,msg', [('torch', 'not of the form'), ('torch-t1-b1-x', 'not of the form'),
                                      ('mxnet-t1-b1', "unknown runtime 'mxnet'"), ('torch-t1-b0', 'must be >= 1'),
                                      ('ort-t9999-b1', 'more threads than cores')])
def test_bad_settings(text, msg):
    with pytest.raises(P.ProfileError, match=msg):
        P.parse_setting(text)


def test_settings_and_device_names():
    assert P.parse_setting('pytorch-t1-b4') == P.Setting('torch', 1, 4)
    assert P.parse_setting(P.Setting('ort', 1, 1)) == P.Setting('ort', 1, 1)
    assert P.Setting('ort', 2, 8).device('m1') == 'm1_ort_t2_b8'


def test_cpu_specs_from_recorded_text():
    lscpu = 'CPU(s): 8\nModel name: Cortex-A72\nCore(s) per socket: 4\nSocket(s): 2\nCPU max MHz: 1500.0000'
    s = P.cpu_specs('', lscpu, '')
    assert (s['logical_cpus'], s['cores'], s['max_clock_ghz'], s['cpu_model']) == (8, 8, 1.5, 'Cortex-A72')
    s = P.cpu_specs('processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2000.0\ncpu cores\t: 1\n', '', '')
    assert (s['cpu_model'], s['cores'], s['max_clock_ghz']) == ('X', 1, 2.0) and 'no cpufreq' in s['clock_source']


def test_cpu_specs_live_come_from_psutil(monkeypatch):
    psutil = pytest.importorskip("psutil")
    live = P.cpu_specs()
    assert list(live) == list(P.cpu_specs('', '', ''))  # the same keys, live or recorded
    assert (live['logical_cpus'], live['cores']) == (psutil.cpu_count(), psutil.cpu_count(logical=False))
    Freq = collections.namedtuple('Freq', 'current min max')  # psutil's scpufreq, in MHz
    monkeypatch.setattr(psutil, 'cpu_freq', lambda: Freq(2596.1, 0.0, 0.0))  # a VM: no cpufreq, current clock only
    s = P.cpu_specs()
    assert s['max_clock_ghz'] == 2.596 and 'no cpufreq' in s['clock_source']
    monkeypatch.setattr(psutil, 'cpu_freq', lambda: Freq(1800.0, 800.0, 3500.0))
    assert (P.cpu_specs()['max_clock_ghz'], P.cpu_specs()['clock_source']) == (3.5, 'psutil cpufreq max')
    monkeypatch.setattr(psutil, 'cpu_freq', lambda: None)  # psutil tells nothing: lscpu / /proc/cpuinfo's clock stands
    monkeypatch.setattr(psutil, 'cpu_count', lambda logical=True: None)
    text = machine._text_specs(machine._read('/proc/cpuinfo'), machine._run_lscpu(), '')
    assert P.cpu_specs() == text


def test_detect_environment_memory_and_cpus():
    psutil = pytest.importorskip("psutil")
    env = P.detect_environment()
    assert env['memory_gib'] == round(psutil.virtual_memory().total / 2**30, 1) > 0
    if hasattr(os, 'sched_getaffinity'): assert env['usable_cpus'] == len(os.sched_getaffinity(0))


def test_setting_rows_form_a_device_table_that_joins_the_shared_one():
    env = dict(cpu_model='CPU', logical_cpus=4, hypervisor='', cores=4, max_clock_ghz=3.0, clock_source='lscpu')
    rows = P.setting_rows([P.Setting('torch', 2, 1)], 'box', env, tdp_w=65)
    t = DeviceTable(rows)
    assert t['box_torch_t2_b1'][['cores', 'max_clock_ghz', 'tdp_w', 'batch_size']].tolist() == [2, 3.0, 65, 1]
    shared = load_devices()
    both = DeviceTable(pd.concat([shared.df, t.df]))
    assert len(both) == len(shared) + 1
    assert np.isnan(DeviceTable(P.setting_rows([P.Setting('torch', 1, 1)], 'box', env))['box_torch_t1_b1']['tdp_w'])


# --- perf --------------------------------------------------------------------------------------------------------

VM_PERF = """3176.45,msec,task-clock,3176448928,100.00,0.335,CPUs utilized
<not supported>,,cycles,0,100.00,,
<not counted>,,instructions,0,0.00,,
913,,context-switches,3176448928,100.00,287.428,/sec
"""


def test_perf_rows_keep_unsupported_as_nan():
    rows = P.perf_rows(VM_PERF, device='d', target='nor_conv_1x1', stage='16x32x32').set_index('event')
    assert rows.loc['cycles', 'status'] == 'not supported' and np.isnan(rows.loc['cycles', 'value'])
    assert rows.loc['instructions', 'status'] == 'not counted' and np.isnan(rows.loc['instructions', 'value'])
    assert rows.loc['task-clock', 'value'] == 3176.45 and (rows['device'] == 'd').all()


def test_perf_missing_is_reported(monkeypatch):
    monkeypatch.setattr(machine.shutil, 'which', lambda name: None)  # perf_stat lives in maplex.machine (appendix A10)
    with pytest.raises(P.PerfUnavailableError, match='perf is not installed'):
        P.perf_stat(lambda: None)


# --- the resumable profiler ----------------------------------------------------------------------------------------

class Stop(Exception):
    pass


def _stop_after(n):
    seen = []

    def hook(arch):
        seen.append(arch)
        if len(seen) == n:
            raise Stop
    return hook


FAST = dict(settings=['torch-t1-b1', 'torch-t1-b2'], prefix='m', warmup=0, repeats=2, op_number=1, probe_repeats=2,
            perf=False, progress=False)


def test_interrupted_run_resumes_and_loses_nothing(tmp_path):
    out, archs = tmp_path / 'p', [5, 0, 9, 3, 7]
    with pytest.raises(Stop):
        P.profile_device(out, archs=archs, on_arch=_stop_after(3), **FAST)
    parts = {p.name: P._read_rows(p) for p in (out / P.PARTIAL_DIR).iterdir()}
    assert set(parts) == {'m_torch_t1_b1.csv', 'm_torch_t1_b2.csv'}
    before = {k: v.set_index('arch_index')['median_ms'] for k, v in parts.items()}
    order = [archs[i] for i in np.random.default_rng(0).permutation(len(archs))]  # the profiler's shuffled order
    assert all(list(v.index) == order[:3] for v in before.values())
    # a kill in the middle of writing a row leaves a line without its newline: it must be dropped, not glued
    victim = next((out / P.PARTIAL_DIR).glob('*b2.csv'))
    victim.write_text(victim.read_text() + f'{order[3]},0.12')
    seen = []
    table, devices = P.profile_device(out, archs=archs, on_arch=seen.append, **FAST)
    assert sorted(seen) == sorted(order[3:])  # only the missing cells were measured again
    assert sorted(table.archs) == sorted(archs) and len(devices) == 2
    assert not (out / P.PARTIAL_DIR).exists()
    stats = pd.read_csv(out / P.STATS_FILE)
    for name, old in before.items():
        dev = name[:-4]
        kept = stats[stats['device'] == dev].set_index('arch_index')['median_ms']
        np.testing.assert_allclose(kept.loc[old.index], old.to_numpy(), rtol=1e-5)  # the first run's numbers survive
    assert set(zip(stats['device'], stats['arch_index'])) == {(d, a) for d in table.devices for a in archs}
    log = json.loads((out / P.ENV_FILE).read_text())['runs']
    assert log[0]['finished_utc'] is None and log[1]['measured_now'] == 2 * 2  # cells 3 and 7 in both settings
    # the finished files are the data layer's formats
    back = read_latency_csv(out / P.LATENCY_FILE)
    pd.testing.assert_frame_equal(back.ms.loc[table.archs, table.devices], table.ms, check_exact=False, rtol=1e-5)
    assert DeviceTable(pd.read_csv(out / P.DEVICES_FILE)).devices == table.devices
    luts = P.profiled_luts(out)
    assert isinstance(luts['m_torch_t1_b1'], LayerwiseLUT)
    assert len(P.read_profile_file(P.PROBES_FILE, out)) == 2 * len(PROBES)


def test_finished_files_are_atomic_and_gzip_is_reproducible(tmp_path):
    df = pd.DataFrame({'a': [1.0, 2.5]})
    P._write_csv(df, tmp_path / 'x.csv.gz')
    first = (tmp_path / 'x.csv.gz').read_bytes()
    P._write_csv(df, tmp_path / 'x.csv.gz')
    assert first == (tmp_path / 'x.csv.gz').read_bytes()  # mtime 0: same bytes
    assert gzip.decompress(first).decode().splitlines() == ['a', '1', '2.5']
    assert [p.name for p in tmp_path.iterdir()] == ['x.csv.gz']  # no temporary left behind


def test_profile_errors(tmp_path):
    with pytest.raises(P.ProfileError, match='settings repeat'):
        P.profile_device(tmp_path, settings=['torch-t1-b1', 'eager-t1-b1'], archs=[0])
    with pytest.raises(P.ProfileError, match='without repeats'):
        P.profile_device(tmp_path, settings=['torch-t1-b1'], archs=[0, 0])
    with pytest.raises(P.ProfileError, match='holds no latency_ms.csv.gz'):
        P.load_profile(tmp_path)
    with pytest.raises(P.ProfileError, match='n_test must be'):
        P.select_archs(n_test=10**6)


def test_cli_parses_and_reports_errors(tmp_path, capsys):
    args = P.build_profile_parser().parse_args(['--out', str(tmp_path), '--archs', '1', '2', '--no-perf'])
    assert args.archs == [1, 2] and args.no_perf and args.func is P.cmd_profile
    assert P.main(['--out', str(tmp_path), '--settings', 'gpu-t1-b1']) == 2
    assert "unknown runtime 'gpu'" in capsys.readouterr().err
    import argparse
    sub = argparse.ArgumentParser(prog='maplex').add_subparsers(dest='cmd')
    P.build_profile_parser(sub)
    assert sub.choices['profile'].parse_args(['--out', 'x']).repeats == 7


def test_cli_runs_a_tiny_profile(tmp_path, capsys):
    assert P.main(['--out', str(tmp_path), '--archs', '1', '2', '--settings', 'torch-t1-b1', '--repeats', '2',
                   '--warmup', '0', '--no-characterise', '--no-progress']) == 0
    assert '2 archs x 1 settings' in capsys.readouterr().out
    assert json.loads((tmp_path / P.ENV_FILE).read_text())['runs'][0]['request']['command']  # the command is on record


# --- the embedded dataset ----------------------------------------------------------------------------------------

def test_embedded_dataset():
    table, devices = P.load_embedded()
    assert isinstance(table, LatencyTable) and len(table) >= 2000 and len(table.devices) >= 4
    assert set(POOL) <= set(table.archs) and len(set(table.archs) - set(POOL)) >= 1100
    assert devices.devices == table.devices and set(devices.df['class']) == {'cpu'}
    assert all(d.startswith('vcpu2_') for d in table.devices)
    size = sum(p.stat().st_size for p in P.embedded_dir().iterdir())
    assert size < 1_000_000, f'embedded dataset is {size} bytes'
    assert not (P.embedded_dir() / P.PARTIAL_DIR).exists()
    stats = P.read_profile_file(P.STATS_FILE)
    assert set(stats['device']) == set(table.devices) and stats['n'].min() >= 7
    luts = P.profiled_luts()
    assert set(luts) == set(table.devices)
    probes = P.read_profile_file(P.PROBES_FILE)
    assert set(probes['arch_index']) == set(PROBES)
    env = P.read_environment()
    assert env[-1]['finished_utc'] and env[-1]['request']['settings']
    assert (P.embedded_dir() / 'README.md').is_file()


@pytest.mark.parametrize("bad", [dict(repeats=0), dict(probe_repeats=0), dict(op_number=0), dict(warmup=-1)])
def test_bad_counts_are_refused_before_anything_is_written(tmp_path, bad):
    with pytest.raises(P.ProfileError, match="repeats"):
        P.profile_device(tmp_path / "out", settings=["torch-t1-b1"], archs=[0, 1], progress=False, **bad)
    assert not (tmp_path / "out").exists()


def test_appendix_modules_are_lower_layers_and_reexported():
    import maplex.profilefiles as F
    for name in ('ProfileError', 'cpu_specs', 'detect_environment', 'perf_stat', 'to_onnx', 'onnx_writer'):
        assert getattr(P, name) is getattr(machine, name)
    for name in ('load_embedded', 'load_profile', 'read_profile_file', 'read_environment', 'STATS_FILE', '_read_rows'):
        assert getattr(P, name) is getattr(F, name)
    import ast
    for mod in (machine, F):  # lower layers: they never import the lesson module that re-exports them
        tree = ast.parse(open(mod.__file__).read())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module in ('profile', 'maplex.profile')]


def test_to_onnx_refuses_an_adaptive_pool_to_more_than_one_pixel():
    pytest.importorskip('onnx')
    with pytest.raises(P.ProfileError, match='AdaptiveAvgPool2d'):
        P.to_onnx(torch.nn.AdaptiveAvgPool2d(2).eval())
