"""benchmarks.speed / tools/benchmark.py: candidates, a real (tiny) measurement, ratios, and bad
names. Speed targets themselves are measured by the tool, never asserted in tests; neither is RSS,
which depends on the allocator: memory assertions use saved-tensor bytes, which do not."""
import json

import pytest
import torch

import benchmark as benchmark_tool  # tools/benchmark.py
from benchmarks.candidates import build_candidate, parse_candidate
from benchmarks.report import add_hardware_share, add_ratios, summarize
from benchmarks.speed import BenchSettings, measure, saved_activation_bytes, split_allocator
from benchmarks import speed


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
    # saved-tensor bytes depend on shapes only: a fresh model and input give the same count
    model = build_candidate('ours:b0').train()
    assert result['saved_bytes'] == saved_activation_bytes(model, torch.randn(2, 3, 64, 64)) > 0
    rows = add_ratios([summarize('a', [result], settings), summarize('b', [result], settings)], 'b')
    assert rows[0]['time_x'] == rows[0]['peak_x'] == rows[0]['saved_x'] == 1.0
    assert rows[0]['images_per_s'] == pytest.approx(2 / (rows[0]['step_ms'] / 1e3), rel=1e-2)


def test_saved_bytes_grow_with_the_batch():
    model = build_candidate('ours:b0').train()
    one = saved_activation_bytes(model, torch.randn(1, 3, 64, 64))
    two = saved_activation_bytes(model, torch.randn(2, 3, 64, 64))
    assert one < two <= 2 * one


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


def test_allocator_suffix_is_parsed_and_checked():
    assert split_allocator('timm:b0') == ('timm:b0', 'default')
    assert split_allocator('ours:b0+me@lean') == ('ours:b0+me', 'lean')
    assert split_allocator('unet:b4+mb50@caching') == ('unet:b4+mb50', 'caching')
    with pytest.raises(ValueError, match=r"'timm:b0@fast': the allocator after \"@\" must be"):
        split_allocator('timm:b0@fast')
    with pytest.raises(SystemExit):
        benchmark_tool.parse_args(['ours:b0@fast'])


def test_tool_measures_in_subprocesses_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `benchmarks` is not installed: the workers must still find it
    benchmark_tool.main(['ours:b0', '--batch', '1', '--resolution', '64', '--warmup', '0',
                         '--steps', '1', '--rounds', '1', '--threads', '1', '--out', 'out/b0'])
    rows = json.loads((tmp_path / 'out/b0.json').read_text())['rows']
    assert [row['name'] for row in rows] == ['ours:b0'] and rows[0]['saved_mib'] > 0
    # the share of the machine: achieved GFLOP/s against a matmul measured the same way
    assert 0 < rows[0]['of_peak'] < 1 and rows[0]['gflop_s'] > 0
    text = (tmp_path / 'out/b0.md').read_text()
    assert text.startswith('train, batch 1, 64x64') and 'matmul peak' in text
    assert (tmp_path / 'out/b0.png').stat().st_size > 0


def test_hardware_share_counts_a_training_step_as_three_passes():
    rows = add_hardware_share([{'name': 'a', 'gmacs': 0.5, 'step_ms': 1000.0}], 20.0,
                              BenchSettings(batch=4))
    # 0.5 GMAC x 2 FLOP x 4 images x 3 passes in one second = 12 GFLOP/s, 0.6 of 20
    assert rows[0]['gflop_s'] == 12.0 and rows[0]['of_peak'] == 0.6
    infer = add_hardware_share([{'name': 'a', 'gmacs': 0.5, 'step_ms': 1000.0}], 20.0,
                               BenchSettings(batch=4, mode='infer'))
    assert infer[0]['gflop_s'] == 4.0


def test_efficientdet_candidates_are_ours_and_effdets_d0():
    pytest.importorskip('effdet')
    ours, theirs = build_candidate('det:d0+me'), build_candidate('effdet:d0', 256)
    assert sum(p.numel() for p in ours.parameters()) == 3_880_067 == \
        sum(p.numel() for p in theirs.parameters())
    assert ours.backbone.body.memory_efficient
    x = torch.randn(2, 3, 256, 256)
    mine = saved_activation_bytes(ours.train(), x)
    assert mine > 0 and saved_activation_bytes(theirs.train(), x) > 0


def test_atendw_option_turns_the_fast_depthwise_gradient_off_for_its_worker():
    from effnet_backbones.layers import depthwise
    assert parse_candidate('unet:b0+me+atendw') == ('unet', 'b0', ['me', 'atendw'])
    previous = depthwise.fast_depthwise_enabled()
    try:
        build_candidate('ours:b0+atendw')
        assert not depthwise.fast_depthwise_enabled()
    finally:
        depthwise.set_fast_depthwise(previous)


def test_onednn_option_turns_the_small_map_paths_off_for_its_worker():
    from effnet_backbones.layers import small_conv
    assert parse_candidate('det:d0+onednn') == ('det', 'd0', ['onednn'])
    previous = small_conv.small_conv_enabled()
    try:
        build_candidate('ours:b0+onednn')
        assert not small_conv.small_conv_enabled()
    finally:
        small_conv.set_small_conv(previous)


def test_memory_budget_option_parses_and_needs_compile():
    from benchmarks.candidates import memory_budget_of
    assert parse_candidate('timm:b0+mb50') == ('timm', 'b0', ['mb50'])
    assert memory_budget_of('ours:b0+me+mb30') == 0.3 and memory_budget_of('ours:b0') is None
    for bad, match in (('ours:b0+mb50+mb30', 'at most one'), ('ours:b0+mb150', 'percentage'),
                       ('ours:b0+mbx', r"unknown options \['mbx'\]")):
        with pytest.raises(ValueError, match=match):
            parse_candidate(bad)
    with pytest.raises(ValueError, match=r'\+mbNN .* needs --compile'):
        measure('ours:b0+mb50', BenchSettings(batch=1, resolution=32, warmup=0, steps=1))


def test_optimizer_options_add_a_real_adamw_step_to_the_measured_step():
    from benchmarks.candidates import optimizer_of
    assert optimizer_of('ours:b0') is None
    assert optimizer_of('unet:b0+me+adamw') == 'DefaultOptimWrapperConstructor'
    assert optimizer_of('det:d0+adamwfast') == 'effnet_backbones.FastOptimWrapperConstructor'
    with pytest.raises(ValueError, match='at most one of adamw, adamwfast'):
        parse_candidate('ours:b0+adamw+adamwfast')
    model = build_candidate('ours:b0+adamwfast')
    for option in ('adamw', 'adamwfast'):
        wrapper = speed._optim_wrapper(model, optimizer_of(f'ours:b0+{option}'))
        before = [param.detach().clone() for param in model.parameters()]
        loss = sum(out.square().mean() for out in model(torch.randn(2, 3, 64, 64)))
        wrapper.update_params(loss)
        assert sum(not torch.equal(a, b) for a, b in zip(before, model.parameters())) > 100
        assert all(param.grad is None for param in model.parameters())  # zeroed, as each step
        assert wrapper.clip_grad_kwargs['max_norm'] == 5.0
        assert wrapper.optimizer.defaults['weight_decay'] == 1e-4
    measured = measure('ours:b0+adamw', BenchSettings(batch=2, resolution=64, warmup=0, steps=1))
    assert len(measured['times']) == 1


def test_small_conv_benchmark_times_each_formulation_and_names_the_rules_pick(tmp_path):
    from benchmarks.small_conv import main, run
    rows = run(pointwise=[(2, 64, 64)], depthwise=[(2, 64)], sides=[1, 32], repeats=5)
    picked = {(row['kind'], row['side']): row['picked'] for row in rows}
    assert picked == {('pointwise', 1): 'thnn', ('pointwise', 32): 'onednn',
                      ('depthwise3x3', 1): 'unfold', ('depthwise3x3', 32): 'onednn'}
    assert set(rows[0]['us']) == {'onednn', 'thnn', 'linear'}
    assert set(rows[-1]['us']) == {'onednn', 'unfold'}
    assert all(value > 0 for row in rows for value in row['us'].values())
    out = str(tmp_path / 'small')
    main(['--out', out, '--sides', '1', '--repeats', '5'])
    table = (tmp_path / 'small.md').read_text()
    assert '| pointwise | 8 | 320 -> 1152 | 1 |' in table and '| depthwise3x3 | 8 | 480 | 1 |' in table


def test_a_failing_candidate_leaves_the_others_table(tmp_path, monkeypatch):
    # +mb50 without --compile fails in its worker: reported, not measured again, not fatal
    logged = []
    settings = BenchSettings(batch=1, resolution=64, warmup=0, steps=1, threads=1)
    rows = speed.run_benchmark(['ours:b0+mb50', 'ours:b0'], settings, rounds=2, log=logged.append)
    assert rows[0]['name'] == 'ours:b0+mb50' and 'needs --compile' in rows[0]['failed']
    assert rows[1]['step_ms'] > 0 and sum('ours:b0+mb50' in line for line in logged) == 1
    rows = add_ratios(rows, 'ours:b0+mb50')  # the baseline failed: ratios against the first measured
    assert rows[1]['time_x'] == 1.0 and rows[1]['baseline'] == 'ours:b0' and 'time_x' not in rows[0]
    with pytest.raises(RuntimeError, match='every candidate failed'):
        speed.run_benchmark(['ours:b0+mb50'], settings, rounds=1, log=logged.append)
    monkeypatch.chdir(tmp_path)  # the tool writes the table, then exits non-zero
    with pytest.raises(SystemExit, match='failed: ours:b0\\+mb50'):
        benchmark_tool.main(['ours:b0+mb50', 'ours:b0', '--batch', '1', '--resolution', '64',
                             '--warmup', '0', '--steps', '1', '--rounds', '1', '--threads', '1',
                             '--out', 'partial'])
    text = (tmp_path / 'partial.md').read_text()
    assert 'needs --compile' in text and '| ours:b0 |' in text


def test_a_failed_peak_worker_leaves_the_table_without_share_columns(tmp_path, monkeypatch):
    def broken(settings):
        raise RuntimeError('benchmark of __matmul_peak__ failed')
    monkeypatch.setattr(benchmark_tool, 'measure_peak_gflops', broken)
    monkeypatch.chdir(tmp_path)
    benchmark_tool.main(['ours:b0', '--batch', '1', '--resolution', '64', '--warmup', '0',
                         '--steps', '1', '--rounds', '1', '--threads', '1', '--out', 'nopeak'])
    row = json.loads((tmp_path / 'nopeak.json').read_text())['rows'][0]
    assert row['step_ms'] > 0 and 'of_peak' not in row
