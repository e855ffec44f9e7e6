"""effnet_backbones.benchmark / tools/benchmark.py: candidates, a real (tiny) measurement, ratios,
and bad names. Speed targets themselves are measured by the tool, never asserted in tests."""
import pytest
import torch

import benchmark as benchmark_tool  # tools/benchmark.py
from effnet_backbones.benchmark import (BenchSettings, add_ratios, build_candidate, measure,
                                        parse_candidate, summarize)


@pytest.mark.parametrize('name,taps', [('ours:b0+me+cp', 4), ('timm:b0', 4), ('tv:b0', 4)])
def test_candidates_build_with_the_same_taps(name, taps):
    model = build_candidate(name)
    outputs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == [24, 40, 112, 320][:taps]
    if name.startswith('ours'):
        assert model.memory_efficient and model.with_cp == 'stage'


def test_measure_runs_training_steps_and_reports_memory():
    settings = BenchSettings(batch=2, resolution=64, warmup=1, steps=2)
    result = measure('ours:b0', settings)
    assert result['params'] == 3595388 and len(result['times']) == 2
    assert result['peak_bytes'] >= result['base_rss_bytes'] > 0
    rows = add_ratios([summarize('a', [result], settings), summarize('b', [result], settings)], 'b')
    assert rows[0]['time_x'] == rows[0]['peak_x'] == 1.0
    assert rows[0]['images_per_s'] == pytest.approx(2 / (rows[0]['step_ms'] / 1e3), rel=1e-2)


@pytest.mark.parametrize('name,match', [('ours', r'FAMILY:ARCH'), ('keras:b0', r'FAMILY one of'),
                                        ('ours:b0+fast', r"unknown options \['fast'\]")])
def test_bad_candidate_names(name, match):
    with pytest.raises(ValueError, match=match):
        parse_candidate(name)


def test_cli_rejects_bad_names_and_baselines():
    with pytest.raises(SystemExit):
        benchmark_tool.parse_args(['ours:b0', 'keras:b0'])
    with pytest.raises(SystemExit):
        benchmark_tool.parse_args(['ours:b0', '--baseline', 'timm:b0'])
    with pytest.raises(ValueError, match="baseline 'x' is not among"):
        add_ratios([{'name': 'a', 'step_ms': 1.0, 'peak_mib': 1.0}], 'x')
