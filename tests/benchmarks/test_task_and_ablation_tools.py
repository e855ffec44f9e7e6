"""tools/benchmark_task.py and tools/ablate.py end to end on tiny runs (demo data, b0, a few
iterations), plus the pieces they are made of: derived configs, switch parsing, summaries."""
import json
from pathlib import Path

import cv2
import pytest

from benchmarks.ablation import ablation_variants, combination_variant, parse_switch
from benchmarks.task import resolve_candidates
from benchmarks.training_runs import (derived_config_text, final_metrics, nest_dotted, reach_time,
                                      summarize_runs)
from tool_loader import CONFIGS, ROOT, tool

DEMO = ROOT / 'tasks' / 'segmentation' / 'demo_data'
QUICK = CONFIGS / 'unet_effb0_quick.py'
TINY = ['--max-iters', '2', '--val-interval', '1',
        '--cfg-options', 'train_dataloader.batch_size=2', 'train_dataloader.dataset.crop_size=64',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'model.decoder_options.decoder_channels=[16,16,16,16,16]']


def _check_outputs(stem: Path, names):
    data = json.loads(stem.with_suffix('.json').read_text())
    assert [row['name'] for row in data['rows']] == list(names)
    assert all(row['failed'] == 0 and row['seeds'] == 1 for row in data['rows'])
    for run in data['runs']:
        # two validations (iterations 1 and 2), each with all metrics and training seconds
        assert [e['iter'] for e in run['evaluations']] == [1, 2]
        assert 0 <= run['evaluations'][-1]['metrics']['mFgDice'] <= 1
        assert run['evaluations'][0]['seconds'] <= run['evaluations'][1]['seconds']
        assert run['parameters'] > 0 and run['peak_rss_mb'] > 100
        assert 0 < run['train_rss_rise_mb'] < run['peak_rss_mb']  # what training itself added
    assert all(row['train_rss_rise_mb'] > 0 for row in data['rows'])
    text = stem.with_suffix('.md').read_text()
    assert all(f'| {name} |' in text for name in names)
    image = cv2.imread(str(stem.with_suffix('.png')))
    assert image is not None and image.shape[1] > image.shape[0]
    return data


def test_benchmark_task_runs_two_candidates_and_writes_three_files(tmp_path, capsys):
    stem = tmp_path / 'bench'
    tool('benchmark_task').main([str(QUICK), '--data-root', str(DEMO), '--candidates',
                                 'ours-b0', 'ours-b0-scse', '--reference', 'ours-b0',
                                 '--out', str(stem), *TINY])
    data = _check_outputs(stem, ['ours-b0', 'ours-b0-scse'])
    params = {row['name']: row['params'] for row in data['rows']}
    assert params['ours-b0-scse'] > params['ours-b0']  # the scSE taps were really built
    assert 'reach_ref_s' in data['rows'][0]
    # the derived config of each run is on disk and names what it changed
    config = (tmp_path / 'bench_runs' / 'ours-b0-scse' / 'seed0' / 'config.py').read_text()
    assert "'scse': True" in config and 'benchmarks.peers' in config
    # a rerun reuses the finished runs instead of training again
    result = tmp_path / 'bench_runs' / 'ours-b0' / 'seed0' / 'result.json'
    before = result.stat().st_mtime_ns
    tool('benchmark_task').main([str(QUICK), '--data-root', str(DEMO), '--candidates', 'ours-b0',
                                 '--out', str(stem), *TINY])
    assert result.stat().st_mtime_ns == before


def test_ablate_trains_a_two_by_two_grid(tmp_path):
    stem = tmp_path / 'ablation'
    tool('ablate').main([str(QUICK), '--data-root', str(DEMO),
                         '--grid', 'model.encoder_options.shortcut=None,resnet_d',
                         '--grid', 'model.encoder_options.zero_init_residual=False,True',
                         '--out', str(stem), *TINY])
    names = ['shortcut=None+zero_init_residual=False', 'shortcut=None+zero_init_residual=True',
             'shortcut=resnet_d+zero_init_residual=False', 'shortcut=resnet_d+zero_init_residual=True']
    data = _check_outputs(stem, names)
    params = [row['params'] for row in data['rows']]
    assert params[0] == params[1] < params[2] == params[3]  # ResNet-D shortcuts add weights


def test_combos_only_trains_the_default_and_the_combinations(tmp_path, monkeypatch):
    import benchmarks.training_runs as runs
    trained = []

    def fake_run(variant, settings, seed, out_dir):
        trained.append(variant.name)
        return dict(name=variant.name, seed=seed, status=0, training_seconds=1.0, parameters=1,
                    peak_rss_mb=1.0, evaluations=[dict(iter=1, seconds=1.0, metrics={'mFgDice': 0.5})])
    monkeypatch.setattr(runs, 'run_variant', fake_run)
    tool('ablate').main([str(QUICK), '--data-root', str(DEMO), '--mode', 'each', '--combos-only',
                         '--grid', 'model.encoder_options.shortcut=None,resnet_d',
                         '--grid', 'model.encoder_options.zero_init_residual=False,True',
                         '--combo', 'shortcut=resnet_d+zero_init_residual=True',
                         '--out', str(tmp_path / 'a')])
    assert trained == ['default', 'shortcut=resnet_d+zero_init_residual=True']


def test_unknown_candidate_and_bad_switch_are_named():
    with pytest.raises(ValueError, match='smp-resnet99'):
        resolve_candidates('segmentation', ['smp-resnet99'])
    with pytest.raises(ValueError, match='KEY=V1,V2'):
        parse_switch('model.arch')
    with pytest.raises(ValueError, match='at least two'):
        parse_switch('model.arch=b0')


def test_switch_values_are_literals_split_outside_brackets():
    assert parse_switch("a.b=None,resnet_d,'x',0.2,(1, 2),[3,4]") == \
        ('a.b', [None, 'resnet_d', 'x', 0.2, (1, 2), [3, 4]])


def test_labelled_values_name_the_variant_and_keep_the_literal():
    key, values = parse_switch("custom_hooks=plain:[{'type': 'A'}],precise:[{'type': 'A'}, {'type': 'B'}]")
    variants = ablation_variants([(key, values)], 'each')
    assert [v.name for v in variants] == ['default', 'custom_hooks=precise']
    assert variants[1].overrides == {'custom_hooks': [{'type': 'A'}, {'type': 'B'}]}


def test_a_combination_sets_several_switches_and_keeps_the_others_default():
    switches = [parse_switch("custom_hooks=plain:[1],precise:[1, 2]"),
                parse_switch('model.encoder_options.shortcut=None,resnet_d'),
                parse_switch('model.arch=b0,b4')]
    combo = combination_variant(switches, 'custom_hooks=precise+shortcut=resnet_d')
    assert combo.name == 'custom_hooks=precise+shortcut=resnet_d'
    assert combo.overrides == {'custom_hooks': [1, 2], 'model': {
        'encoder_options': {'shortcut': 'resnet_d'}, 'arch': 'b0'}}
    with pytest.raises(ValueError, match='not one of the values'):
        combination_variant(switches, 'shortcut=resnet_x')
    with pytest.raises(ValueError, match='--grid keys'):
        combination_variant(switches, 'depth=3')


def test_each_mode_changes_one_switch_at_a_time():
    switches = [('model.x', [0, 1, 2]), ('model.y', [False, True])]
    each = ablation_variants(switches, 'each')
    assert [v.name for v in each] == ['default', 'x=1', 'x=2', 'y=True']
    assert each[0].overrides == {'model': {'x': 0, 'y': False}}
    assert each[3].overrides == {'model': {'x': 0, 'y': True}}
    assert len(ablation_variants(switches, 'grid')) == 6


def test_derived_config_inherits_the_recipe_and_keeps_its_imports(tmp_path):
    text = derived_config_text(str(QUICK), nest_dotted({'model.arch': 'b4', 'model.x.y': None}))
    assert f"_base_ = [{str(QUICK.resolve())!r}]" in text
    assert "'tasks.segmentation'" in text and "'benchmarks.peers'" in text
    assert "model = {'arch': 'b4', 'x': {'y': None}}" in text
    (tmp_path / 'c.py').write_text(text)
    from mmengine.config import Config
    cfg = Config.fromfile(str(tmp_path / 'c.py'))
    assert cfg.model.arch == 'b4' and cfg.model.type == 'effnet_backbones.SegmentationModel'


def test_summary_spread_and_time_to_reach_the_reference():
    def run(name, seed, values):
        return dict(name=name, seed=seed, status=0, training_seconds=10.0 * len(values),
                    parameters=5, peak_rss_mb=100.0,
                    evaluations=[dict(iter=10 * (i + 1), seconds=10.0 * (i + 1),
                                      metrics={'m': v}) for i, v in enumerate(values)])
    results = [run('ref', 0, [0.2, 0.5]), run('ref', 1, [0.3, 0.7]),
               run('fast', 0, [0.6, 0.8]), run('fast', 1, [0.5, 0.9]),
               dict(name='broken', seed=0, status=1)]
    rows = {row['name']: row for row in summarize_runs(results, 'm', reference='ref')}
    assert rows['ref']['m'] == '0.600 (0.500-0.700)'
    assert rows['fast']['reach_ref_iter'] == 15  # seed 0 reaches 0.6 at 10, seed 1 at 20
    assert rows['broken']['failed'] == 1 and rows['broken']['seeds'] == 0
    assert reach_time(results[0], 'm', 0.9) is None
    assert final_metrics(results[2]) == {'m': 0.8}
    assert 'precise_bn_s' not in rows['ref']  # no run recorded PreciseBN
    for result, spent in zip(results[:4], (3.0, 5.0, 1.0, 2.0)):
        result['evaluations'][-1]['precise_bn_seconds'] = spent
    rows = {row['name']: row for row in summarize_runs(results, 'm', reference='ref')}
    assert rows['ref']['precise_bn_s'] == 4.0 and rows['fast']['precise_bn_s'] == 1.5
    assert rows['broken']['precise_bn_s'] is None
