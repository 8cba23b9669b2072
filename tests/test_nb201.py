"""Error paths and round-trip properties of `maplex.nb201` (arch strings, indices, encodings, costs)."""
import random
import re

import numpy as np
import pytest

from maplex.nb201 import (EDGES, N_ARCHS, OPS, ArchError, all_arch_strs, arch_index, arch_indices, arch_str,
                          cost_table, flops_params, format_arch, is_zero_output, live_edges, onehot, op_counts,
                          op_ids, parse_arch)

GOOD = '|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|'


def raises(fn, *args, match: str):
    "Call fn(*args), expect an ArchError whose message contains `match` literally."
    with pytest.raises(ArchError, match=re.escape(match)):
        fn(*args)


# ---- error paths: each message must quote the bad part

def test_archerror_is_valueerror():
    assert issubclass(ArchError, ValueError)


@pytest.mark.parametrize('bad, part', [
    (GOOD.replace('nor_conv_1x1', 'conv_5x5'), "unknown op 'conv_5x5' in edge 'conv_5x5~1'"),
    (GOOD.replace('avg_pool_3x3', 'AVG_POOL_3X3'), "'AVG_POOL_3X3'"),
    (GOOD.replace('|none~0|', '|~0|'), "unknown op '' in edge '~0'"),
])
def test_unknown_op(bad, part):
    raises(parse_arch, bad, match=part)
    raises(arch_index, bad, match=part)


@pytest.mark.parametrize('bad, part', [
    ('|none~0|+|none~0|+|none~0|none~1|none~2|', "node 2 needs 2 incoming edge(s), got 1 in '|none~0|'"),
    ('|none~0|none~1|+|none~0|none~1|+|none~0|none~1|none~2|', "node 1 needs 1 incoming edge(s), got 2"),
    ('|none~0|+|none~0|none~1|+|none~0|none~1|none~2|none~3|', "node 3 needs 3 incoming edge(s), got 4"),
    ('|none~0|+|none~0|none~1|', "expected 3 node groups joined by '+', got 2"),
    ('|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|', "got 4 in"),
])
def test_wrong_edge_count(bad, part):
    raises(parse_arch, bad, match=part)


@pytest.mark.parametrize('bad, part', [
    ('|none~1|+|none~0|none~1|+|none~0|none~1|none~2|', "edge 'none~1' into node 1 must come from node 0"),
    ('|none~0|+|none~0|none~2|+|none~0|none~1|none~2|', "edge 'none~2' into node 2 must come from node 1"),
    ('|none~0|+|none~0|none~1|+|none~0|none~2|none~1|', "edge 'none~2' into node 3 must come from node 1"),
])
def test_bad_from_node(bad, part):
    raises(parse_arch, bad, match=part)


@pytest.mark.parametrize('bad, part', [
    ('|none~0|+|none~0|none~1|+|none~0|none~1|none~2', "node 3 group '|none~0|none~1|none~2' must start and end with '|'"),
    ('none~0|+|none~0|none~1|+|none~0|none~1|none~2|', "node 1 group 'none~0|' must start and end"),
    ('|none~0|,|none~0|none~1|,|none~0|none~1|none~2|', "expected 3 node groups joined by '+', got 1"),
    ('|none~0|+|none~0|none-1|+|none~0|none~1|none~2|', "edge 'none-1' into node 2 is not of the form 'op~1'"),
    ('|none~0|+|none~0||+|none~0|none~1|none~2|', "edge '' into node 2 is not of the form 'op~1'"),
    ('|none~0|++|none~0|none~1|none~2|', "node 2 group '' must start and end"),
    (' ' + GOOD, "node 1 group ' |nor_conv_3x3~0|'"),
    ('', "expected 3 node groups joined by '+', got 1 in ''"),
])
def test_malformed_separators(bad, part):
    raises(parse_arch, bad, match=part)


@pytest.mark.parametrize('bad', [N_ARCHS, -1, 10**9])
def test_out_of_range_index(bad):
    raises(arch_str, bad, match=f'arch index {bad} is out of range 0..{N_ARCHS - 1}')
    raises(arch_indices, [0, bad], match=f'archs[1]: arch index {bad} is out of range')
    raises(arch_indices, np.array([0, bad]), match=f'arch index {bad} is out of range')


@pytest.mark.parametrize('bad, part', [
    (42, 'an arch string must be a str, got int: 42'),
    (None, 'an arch string must be a str, got NoneType: None'),
    (GOOD.encode(), 'an arch string must be a str, got bytes'),
    (list(parse_arch(GOOD)), 'an arch string must be a str, got list'),
])
def test_non_str_arch(bad, part):
    raises(parse_arch, bad, match=part)


@pytest.mark.parametrize('bad, part', [
    ('12', "an arch index must be an int, got str: '12'"),
    (3.0, 'an arch index must be an int, got float: 3.0'),
    (True, 'an arch index must be an int, got bool: True'),
])
def test_non_int_index(bad, part):
    raises(arch_str, bad, match=part)


def test_mixed_batch_names_position():
    raises(arch_indices, [GOOD, 5, 'oops'], match="archs[2]: expected 3 node groups joined by '+', got 1 in 'oops'")
    raises(onehot, [GOOD, None], match='archs[1]: an arch index must be an int, got NoneType')


def test_format_arch_errors():
    raises(format_arch, ('none',) * 5, match='expected 6 ops (one per edge), got 5')
    raises(format_arch, ('none',) * 5 + ('max_pool_3x3',), match="unknown op 'max_pool_3x3' on edge 5 (3<-2)")
    raises(format_arch, GOOD, match='use parse_arch for arch strings')


def test_is_zero_output_wants_one():
    raises(is_zero_output, [GOOD, GOOD], match='use live_edges for many')


# ---- round trips and properties

def test_roundtrip_all():
    strs = all_arch_strs()
    assert len(strs) == len(set(strs)) == N_ARCHS
    for i in range(0, N_ARCHS, 97):
        s = arch_str(i)
        assert arch_index(s) == i
        assert format_arch(parse_arch(s)) == s
    assert (arch_indices(strs) == np.arange(N_ARCHS)).all()


def test_roundtrip_random_ops():
    rng = random.Random(0)
    for _ in range(200):
        ops = tuple(rng.choice(OPS) for _ in EDGES)
        s = format_arch(ops)
        assert parse_arch(s) == ops
        assert tuple(OPS[k] for k in op_ids(s)[0]) == ops


def test_anchor_indices():
    "The three strings NB201's generator asserts at indices 0, 9 and 123."
    assert arch_str(0) == '|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|'
    assert arch_str(9) == '|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|'
    assert arch_str(123) == '|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|'


def test_cached_results_are_copies():
    strs = all_arch_strs(); strs[0] = 'mutated'
    assert all_arch_strs()[0] != 'mutated'
    t = cost_table(); t.loc[0, 'flops_m'] = -1.0
    assert cost_table().loc[0, 'flops_m'] > 0


def test_global_random_state_untouched():
    random.seed(1); expected = random.random()
    random.seed(1); all_arch_strs(); assert random.random() == expected


def test_encodings_consistent():
    idx = np.arange(N_ARCHS)
    ids, X, counts = op_ids(idx), onehot(idx), op_counts(idx)
    assert X.shape == (N_ARCHS, 24) and X.dtype == np.float32
    back = np.where(X.reshape(-1, 6, 4).any(2), X.reshape(-1, 6, 4).argmax(2) + 1, 0)  # decode one-hot
    assert (back == ids).all()
    assert (counts == np.stack([(ids == k).sum(1) for k in range(len(OPS))], 1)).all()


def test_costs_match_nb201_extremes():
    f, p = flops_params([format_arch(('nor_conv_3x3',) * 6), format_arch(('none',) * 6)])
    np.testing.assert_allclose(f, [220.11969, 7.78305], rtol=0, atol=1e-9)
    np.testing.assert_allclose(p, [1.531546, 0.073306], rtol=0, atol=1e-9)


def test_zero_output():
    t = cost_table()
    assert int(t['zero_output'].sum()) == 341
    assert (t['zero_output'] == ~live_edges(np.arange(N_ARCHS)).any(1)).all()
    assert is_zero_output(format_arch(('none',) * 6))
    assert not is_zero_output(format_arch(('none',) * 3 + ('skip_connect', 'none', 'none')))
    z = t['zero_output'].to_numpy()
    assert np.allclose(t['flops_pruned_m'][z], t['flops_m'].min())
    assert (t['flops_pruned_m'] <= t['flops_m']).all()
