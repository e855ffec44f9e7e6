"""The inference-tricks benchmark runs what each row names: 'whole' rows predict whole slices
even for a recipe that validates in windows, 'slide' rows in windows."""
from types import SimpleNamespace

from mmengine.config import Config

import tasks.engine
from benchmarks.inference_tricks import run_variant


def test_whole_rows_predict_whole_slices_for_a_recipe_that_validates_in_windows(tmp_path,
                                                                                monkeypatch):
    built = []

    def prepare(config, checkpoint, work_dir=None, data_root=None, cfg_options=None):
        return Config(dict(task='segmentation', train_dataloader=dict(dataset=dict(crop_size=64)),
                           model=dict(test_cfg=dict(mode='slide', window=64))))

    def build(cfg):
        built.append(cfg.model.test_cfg)
        return SimpleNamespace(test=lambda: {'mFgDice': 0.5},
                               test_dataloader=SimpleNamespace(dataset=[0, 1]))
    monkeypatch.setattr(tasks.engine, 'prepare_test_config', prepare)
    monkeypatch.setattr(tasks.engine, 'build_runner', build)
    whole = run_variant('cfg.py', 'ckpt.pth', None, tmp_path, False, False, False)
    slide = run_variant('cfg.py', 'ckpt.pth', None, tmp_path, True, True, False)
    assert whole['variant'] == 'whole' and built[0]['mode'] == 'whole'
    assert slide['variant'] == 'slide + tta' and built[1]['mode'] == 'slide'
    assert built[1]['tta'] is not None and built[0].get('tta') is None
