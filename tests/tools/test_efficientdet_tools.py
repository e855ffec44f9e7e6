"""tools/train.py, test.py and infer.py on the EfficientDet demo config, unchanged: 2 iterations
on a tiny synthetic COCO set (images of 64-72 px, far below P7's 128: padded inside), its COCO
evaluation and inference with boxes inside each image; every D-level config passes the checks."""
import json
from pathlib import Path

import pytest
from mmengine.config import Config

from det_data import make_dataset
from tasks.engine import check_config
from tool_loader import ROOT, cfg_options, run_train_tool, tool

DEMO = str(ROOT / 'configs/efficientdet_d0_nuclei_demo.py')
SMALL = {'model.backbone.in_chans': 3, 'model.num_classes': 2,
         'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
         'train_dataloader.dataset.pipeline': '[]', 'train_cfg.val_interval': 2,
         'default_hooks.checkpoint.interval': 2,
         **{f'{split}_dataloader.dataset.{key}': value for split in ('train', 'val', 'test')
            for key, value in (('classes', None), ('in_channels', 3))}}


def test_efficientdet_trains_tests_and_infers(tmp_path):
    data = make_dataset(tmp_path / 'coco')
    work = tmp_path / 'work'
    runner = run_train_tool(DEMO, data, work, 2, *cfg_options(SMALL, 'effdet_tools'))
    assert runner.iter == 2 and type(runner.model).__name__ == 'EfficientDet'
    metrics = tool('test').main([DEMO, str(work / 'iter_2.pth'), '--data-root', str(data),
                                 '--work-dir', str(tmp_path / 'test'),
                                 *cfg_options(SMALL, 'effdet_tools_test')])
    assert 0.0 <= (metrics['coco/bbox_mAP_50'] or 0.0) <= 1.0
    cfg = Config.fromfile(str(work / 'efficientdet_d0_nuclei_demo.py'))
    cfg.model.score_thresh = 0.0  # an untrained model: keep every detection, to see them mapped
    cfg.dump(str(tmp_path / 'cfg.py'))
    written = tool('infer').main([str(tmp_path / 'cfg.py'), str(work / 'iter_2.pth'),
                                  str(data / 'images' / 'img2.png'), '--out-dir',
                                  str(tmp_path / 'out'), '--device', 'cpu'])
    result = json.loads(Path(next(p for p in written if p.suffix == '.json')).read_text())
    assert result['detections']
    for entry in result['detections']:
        x, y, w, h = entry['bbox']
        assert 0 <= x and 0 <= y and x + w <= 64 + 1e-4 and y + h <= 72 + 1e-4


@pytest.mark.parametrize('variant', [f'd{i}' for i in range(8)])
def test_every_d_level_config_passes_the_checks(variant):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'efficientdet' / f'efficientdet_{variant}_coco.py'))
    check_config(cfg)
    assert cfg.model.variant == variant and cfg.task == 'detection'
