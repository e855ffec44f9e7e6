"""tools/benchmark_growth.py end to end on tiny runs, and its pieces: phases, variants, the
FLOPs columns of the summary."""
import json

import cv2
import pytest

import torch

from benchmarks.growth import (GrowthPhase, growth_variants, new_channel_use, parse_phase,
                               summarize_growth)
from tool_loader import ROOT, tool

DEMO = ROOT / 'tasks' / 'segmentation' / 'demo_data'


def test_phases_parse_and_refuse_bad_crops():
    assert parse_phase('b0:96:0.5') == GrowthPhase('b0', 96, 0.5)
    for bad in ('b0:96', 'b0:100:0.5', 'b0:96:0', 'b0:x:0.5'):
        with pytest.raises(ValueError):
            parse_phase(bad)


def test_the_variants_are_the_reference_and_one_per_mode_and_schedule():
    phases = [GrowthPhase('b0', 64, 0.5), GrowthPhase('b2', 96, 0.25), GrowthPhase('b4', 128, 0.25)]
    series = growth_variants(phases, ['exact', 'net2wider'], ['equal-iters', 'equal-flops'], 10)
    assert [v.name for v in series['equal-iters']] == [
        'b4-scratch', 'progressive-exact-equal-iters', 'progressive-net2wider-equal-iters']
    assert [v.name for v in series['equal-flops']] == [
        'progressive-exact-equal-flops', 'progressive-net2wider-equal-flops']
    scratch = series['equal-iters'][0].overrides
    assert scratch['progressive'] is None and scratch['model'] == dict(arch='b4')
    assert scratch['train_dataloader'] == dict(dataset=dict(crop_size=128))
    grown = series['equal-flops'][1].overrides['progressive']
    assert grown['mode'] == 'net2wider' and grown['rewarm'] == dict(iters=10, start_factor=0.1)
    assert [(p['arch'], p['iters'], p['crop_size']) for p in grown['phases']] == [
        ('b0', 500, 64), ('b2', 250, 96), ('b4', 250, 128)]


def _run(name, points, flops_per_iter):
    return dict(name=name, seed=0, status=0, training_seconds=1.0, parameters=10, peak_rss_mb=1.0,
                evaluations=[dict(iter=i, seconds=float(i), train_flops=i * flops_per_iter,
                                  metrics=dict(mFgDice=value)) for i, value in points])


def test_the_summary_gives_flops_shares_and_the_flops_to_reach_the_reference():
    results = [_run('b4-scratch', [(10, 0.5), (20, 0.8)], 1e14),
               _run('grown', [(10, 0.6), (20, 0.85), (40, 0.9)], 2.5e13),  # reaches 0.8 at 20
               _run('slow', [(10, 0.1), (20, 0.2)], 1e13)]
    rows = {row['name']: row for row in summarize_growth(results, 'mFgDice', 'b4-scratch', None)}
    assert rows['b4-scratch']['train_tflops'] == 2000.0 and rows['b4-scratch']['flops_vs_ref'] == 1.0
    assert rows['b4-scratch']['reach_ref_flops'] == 1.0
    assert rows['grown']['flops_vs_ref'] == 0.5 and rows['grown']['reach_ref_flops'] == 0.25
    assert rows['grown']['iters'] == 40
    assert rows['slow']['reach_ref_flops'] == 'not reached'


def test_new_channel_use_is_the_weight_share_of_new_inputs_into_old_outputs():
    first = {'net.encoder.backbone.stages.2.0.project.conv.weight': torch.zeros(2, 3, 1, 1),
             'net.encoder.backbone.stages.2.0.depthwise.conv.weight': torch.zeros(3, 1, 3, 3),
             'net.decoder.blocks.0.conv1.0.weight': torch.zeros(4, 3, 3, 3)}
    weight = torch.ones(4, 5, 1, 1)
    weight[:2, 3:] = 2.0  # new inputs into the two old outputs: 2 * 2 * 4 of 2 * (3 + 2 * 4)
    final = {'net.encoder.backbone.stages.2.0.project.conv.weight': weight,
             'net.encoder.backbone.stages.2.0.depthwise.conv.weight': torch.ones(5, 1, 3, 3),
             'net.decoder.blocks.0.conv1.0.weight': torch.ones(4, 6, 3, 3)}
    assert new_channel_use(final, first) == {'stages.2': round(16 / 22, 4)}


def test_benchmark_growth_trains_the_reference_and_the_progressive_runs(tmp_path):
    stem = tmp_path / 'growth'
    tool('benchmark_growth').main([
        '--data-root', str(DEMO), '--out', str(stem), '--phases', 'b0:32:0.5', 'b2:64:0.5',
        '--modes', 'exact', '--schedules', 'equal-flops', '--max-iters', '4', '--val-interval', '2',
        '--batch-size', '2',  # a B0 at 32 px has 1x1 maps at stride 32: BN needs two samples
        '--rewarm', '1', '--cfg-options', 'model.decoder_options.decoder_channels=[16,16,16,16,16]'])
    data = json.loads(stem.with_suffix('.json').read_text())
    names = [row['name'] for row in data['rows']]
    assert names == ['b2-scratch', 'progressive-exact-equal-flops']
    rows = {row['name']: row for row in data['rows']}
    assert all(row['failed'] == 0 for row in data['rows'])
    # a B0 at 32 px then a B2 at 64 px costs less per iteration than the B2 at 64 px throughout,
    # so the equal-FLOPs run takes more iterations and ends near the reference's FLOPs
    assert data['schedules']['equal-flops'] > 4 and rows['progressive-exact-equal-flops']['iters'] > 4
    assert 0.8 < rows['progressive-exact-equal-flops']['flops_vs_ref'] < 1.25
    gflops = data['phase_train_gflops']
    assert len(gflops) == 2 and gflops[0] < gflops[1]
    for run in data['runs']:
        assert all('train_flops' in e for e in run['evaluations'])
        # no save_best in benchmark runs: the curves still plot the headline metric
        assert run['metric_key'] == 'mFgDice' and len(run['metric']) == len(run['evaluations'])
    # exact growth starts the old channels' weights on new channels at zero; they then move
    use = data['new_channel_use']['progressive-exact-equal-flops/seed0']
    assert set(use) >= {'stages.2', 'stages.6'} and all(0 <= v < 0.5 for v in use.values())
    image = cv2.imread(str(stem.with_suffix('.png')))
    assert image is not None and image.shape[1] > 2 * image.shape[0]  # three panels, FLOPs last
