"""benchmarks.bandwidth and tools/benchmark.py --bandwidth: the least traffic of element-wise
operators, one profiled step's sums, and the share of the machine's copy bandwidth. Bandwidth
figures themselves are measured by the tool, never asserted; traffic in bytes is exact."""
import json

import pytest
import torch

import benchmark as benchmark_tool  # tools/benchmark.py
from benchmarks.bandwidth import (copy_bandwidth_gb_s, dtype_bytes, elementwise_profile,
                                  traffic_bytes)
from benchmarks.report import add_bandwidth_share, elementwise_breakdown, summarize
from benchmarks.speed import BenchSettings, check_bandwidth_settings, measure

MIB = 2 ** 20


def test_traffic_reads_every_tensor_once_and_writes_the_result_once():
    float_, bf16 = 'float', 'c10::BFloat16'
    assert dtype_bytes(float_) == 4 and dtype_bytes(bf16) == 2 and dtype_bytes('Scalar') == 0
    # out of place, broadcast: read both, write the larger
    assert traffic_bytes('aten::mul', [[8, 16, 4, 4], [8, 16, 1, 1]], [float_, float_]) == \
        (2048 + 128) * 4 + 2048 * 4
    # in place: the first argument is read and written; the scalar alpha counts nothing
    assert traffic_bytes('aten::add_', [[64], [64], []], [float_, float_, 'Scalar']) == 3 * 256
    # a cast: read the float source, write the bfloat16 destination
    assert traffic_bytes('aten::copy_', [[100], [100], []], [bf16, float_, '']) == 200 + 400
    assert traffic_bytes('aten::fill_', [[10, 10], []], [float_, 'Scalar']) == 400
    assert traffic_bytes('aten::sum', [[10, 10], [], []], [float_, '', '']) == 400
    # batch norm backward: grad and input read, grad_input written; the statistics are small
    assert traffic_bytes('aten::native_batch_norm_backward',
                         [[2, 3, 4, 4], [2, 3, 4, 4], [3], [3], [3], [3], [3], [], [], []],
                         [float_] * 7 + ['Scalar', 'Scalar', 'ScalarList']) == \
        3 * 96 * 4 + 5 * 3 * 4


def test_one_profiled_step_sums_the_outermost_elementwise_operators():
    a, b = torch.randn(256, 1024), torch.randn(256, 1024)  # 1 MiB each

    def step():
        torch.add(a, b)      # 3 MiB
        torch.sigmoid(a)     # 2 MiB
        a.mean()             # 1 MiB: its inner sum is not counted again
        torch.mm(a[:, :256], b[:256])  # not element-wise

    profile = elementwise_profile(step, torch.device('cpu'))
    assert profile['bytes'] == 6 * MIB and profile['calls'] == 3 and profile['ms'] > 0
    names = {op['name'] for op in profile['ops']}
    assert names == {'aten::add', 'aten::sigmoid', 'aten::mean'}
    assert sum(op['calls'] for op in profile['ops']) == 3
    assert all(op['gb_s'] > 0 for op in profile['ops'])


def test_measure_adds_the_elementwise_profile_and_the_tool_its_share():
    settings = BenchSettings(batch=2, resolution=32, warmup=1, steps=1, bandwidth=True)
    result = measure('ours:b0', settings)
    profile = result['elementwise']
    # a B0 training step: 16 MBConv blocks' BN + SiLU forward and backward at least
    assert profile['calls'] > 100 and profile['bytes'] > 0 and profile['ms'] > 0
    ops = {op['name'] for op in profile['ops']}
    assert {'aten::native_batch_norm', 'aten::native_batch_norm_backward'} <= ops
    row = summarize('ours:b0', [result], settings)
    assert row['ew_ms'] == pytest.approx(profile['ms'], abs=0.05)
    # shares of the step refer to the profiled steps' own wall time, which holds the operators
    assert row['prof_step_ms'] == pytest.approx(profile['step_ms'], abs=0.05)
    assert 0 < row['ew_of_step'] <= 1
    assert row['ew_gb_s'] == pytest.approx(profile['bytes'] / profile['ms'] / 1e6, rel=1e-2)
    assert add_bandwidth_share([row], row['ew_gb_s'] * 4)[0]['ew_of_bw'] == 0.25
    breakdown = elementwise_breakdown({'ours:b0': [result]})
    assert [r['operator'] for r in breakdown] == [op['name'] for op in profile['ops']]
    # without the option nothing is profiled
    plain = measure('ours:b0', BenchSettings(batch=2, resolution=32, warmup=0, steps=1))
    assert 'elementwise' not in plain and 'ew_ms' not in summarize('a', [plain], settings)


def test_compiled_steps_are_refused():
    with pytest.raises(ValueError, match='measured on eager steps'):
        check_bandwidth_settings(BenchSettings(compile=True, bandwidth=True))
    with pytest.raises(SystemExit):
        benchmark_tool.parse_args(['ours:b0', '--compile', '--bandwidth'])
    check_bandwidth_settings(BenchSettings(compile=True))  # no --bandwidth: fine


def test_copy_bandwidth_is_bytes_moved_over_time():
    assert copy_bandwidth_gb_s(torch.device('cpu'), threads=1, nbytes=4 * MIB, repeats=2) > 0


def test_tool_writes_the_share_and_the_breakdown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    benchmark_tool.main(['ours:b0', '--batch', '1', '--resolution', '64', '--warmup', '0',
                         '--steps', '1', '--rounds', '1', '--threads', '1', '--bandwidth',
                         '--out', 'bw'])
    record = json.loads((tmp_path / 'bw.json').read_text())
    row = record['rows'][0]
    assert 0 < row['ew_of_bw'] and 0 < row['ew_of_step'] < 1
    assert record['elementwise_breakdown'][0]['candidate'] == 'ours:b0'
    text = (tmp_path / 'bw.md').read_text()
    assert 'copy bandwidth' in text and 'Element-wise operators by time' in text


def test_dtypes_come_from_the_raw_events_where_function_events_lack_them():
    # torch 2.11 (the GPU image's) records argument dtypes on the raw profiler events only
    from types import SimpleNamespace

    from torch.profiler import ProfilerActivity, profile

    from benchmarks.bandwidth import _dtypes_by_event
    a = torch.randn(8, 8)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        torch.add(a, a.to(torch.bfloat16))
    dtypes_of = _dtypes_by_event(prof)
    add = next(event for event in prof.events() if event.name == 'aten::add')
    bare = SimpleNamespace(id=add.id, name=add.name)  # a FunctionEvent without input_dtypes
    assert list(dtypes_of(bare))[:2] == ['float', 'c10::BFloat16']
    if hasattr(add, 'input_dtypes'):
        assert list(dtypes_of(bare)) == list(add.input_dtypes)


def test_zero_dim_updates_are_left_out_and_missing_dtypes_are_an_error(monkeypatch):
    import benchmarks.bandwidth as bandwidth
    a, counter = torch.randn(64, 64), torch.zeros((), dtype=torch.long)

    def step():
        counter.add_(1)  # BN's num_batches_tracked: a 0-d tensor, no traffic worth timing
        torch.sigmoid(a)

    profile = elementwise_profile(step, torch.device('cpu'))
    assert profile['calls'] == 1 and [op['name'] for op in profile['ops']] == ['aten::sigmoid']
    monkeypatch.setattr(bandwidth, '_dtypes_by_event', lambda prof: lambda event: [])
    with pytest.raises(RuntimeError, match='no argument dtypes'):
        elementwise_profile(step, torch.device('cpu'))


def test_a_failed_profile_keeps_the_timings_and_says_why(monkeypatch):
    import benchmarks.speed as speed

    def broken(step, device):
        raise RuntimeError('no CUPTI')
    monkeypatch.setattr(speed, 'elementwise_profile', broken)
    settings = BenchSettings(batch=1, resolution=64, warmup=0, steps=1, bandwidth=True)
    result = measure('ours:b0', settings)
    assert len(result['times']) == 1 and result['elementwise_error'] == 'RuntimeError: no CUPTI'
    row = summarize('ours:b0', [result], settings)
    assert row['ew_error'] == 'RuntimeError: no CUPTI' and 'ew_ms' not in row
