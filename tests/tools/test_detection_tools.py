"""tools/train.py, test.py and infer.py on detection configs, unchanged: a 2-iteration run of the
demo config on a tiny synthetic COCO set, its evaluation and inference; the configs build."""
import json

import cv2
import pytest
from mmengine.config import Config

from tool_loader import ROOT, cfg_options, run_train_tool, tool
from det_data import make_dataset
from effnet_backbones.registry import MODELS
from tasks.engine.data import resolve_from_data
from tasks.engine import check_config

DEMO = str(ROOT / 'configs/retinanet_effb0_nuclei_demo.py')
COCO = str(ROOT / 'configs/retinanet_effb3_fpn_coco.py')
SMALL = {  # the synthetic set: RGB, two classes (all of the JSON's); a narrow FPN; no workers
    'model.num_classes': 2, 'model.backbone.in_chans': 3, 'model.fpn.out_channels': 64,
    'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
    'train_dataloader.dataset.pipeline': '[]',
    'model.test_cfg.mode': 'whole',  # trained on whole images (no RandomCrop): predict them whole
    'train_cfg.val_interval': 2, 'default_hooks.checkpoint.interval': 2,
    'default_hooks.logger.interval': 1,
    **{f'{split}_dataloader.dataset.{key}': value for split in ('train', 'val', 'test')
       for key, value in (('classes', None), ('in_channels', 3))},
}


def options(name):
    """--cfg-options arguments: SMALL and a unique experiment name."""
    return cfg_options(SMALL, name)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(data root, work dir, runner) of a 2-iteration run of the demo config."""
    data = make_dataset(tmp_path_factory.mktemp('coco'))
    work = tmp_path_factory.mktemp('work')
    runner = run_train_tool(DEMO, data, work, 2, *options('det_trained'))
    return data, work, runner


def test_train_writes_checkpoints_and_coco_metrics(trained):
    _, work, runner = trained
    assert runner.iter == 2
    assert (work / 'iter_2.pth').is_file()
    assert list(work.glob('best_coco_bbox_mAP_50_iter_*.pth'))
    log = next(work.glob('*/*.log')).read_text()
    for field in ('loss_classification:', 'loss_bbox_regression:', 'coco/bbox_mAP:',
                  'coco/bbox_mAP_50:', 'coco/bbox_mAP_75:'):
        assert field in log
    curves = json.loads((work / 'training_curves.json').read_text())
    assert curves['metric_key'] == 'coco/bbox_mAP_50'
    from tasks.engine.checkpoint import checkpoint_meta
    # the recipe's img_scale='auto' on boxes of 20-30 px: kept at 1.0, saved for test and infer
    assert checkpoint_meta(str(work / 'iter_2.pth'))['dataset_meta']['img_scale'] == 1.0


def test_test_tool_prints_and_writes_flat_metrics(trained, tmp_path, capsys):
    data, work, _ = trained
    out = tmp_path / 'metrics.json'
    metrics = tool('test').main([DEMO, str(work / 'iter_2.pth'), '--data-root', str(data),
                                 '--out', str(out), '--work-dir', str(tmp_path),
                                 *options('det_test')])
    saved = json.loads(out.read_text())
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75'):
        assert f'coco/{key}' in saved and f'coco/{key}' in metrics
        assert saved[f'coco/{key}'] is None or 0.0 <= saved[f'coco/{key}'] <= 1.0
    assert 'coco/bbox_mAP_50' in capsys.readouterr().out


def test_infer_draws_boxes_and_writes_detections(trained, tmp_path):
    data, work, _ = trained
    cfg_file = tmp_path / 'cfg.py'  # infer takes no --cfg-options: save the run's config
    cfg = Config.fromfile(str(work / 'retinanet_effb0_nuclei_demo.py'))
    cfg.model.score_thresh = 0.0  # an untrained model: keep every detection, to see them mapped
    cfg.infer_score_thr = 0.0
    cfg.dump(str(cfg_file))
    image = data / 'images' / 'img2.png'  # 72 x 64
    written = tool('infer').main([str(cfg_file), str(work / 'iter_2.pth'), str(image),
                                  '--out-dir', str(tmp_path / 'out'), '--device', 'cpu'])
    assert sorted(p.name for p in written) == ['img2_boxes.png', 'img2_detections.json']
    result = json.loads((tmp_path / 'out' / 'img2_detections.json').read_text())
    assert result['detections']
    for entry in result['detections']:
        x, y, w, h = entry['bbox']
        assert 0 <= x and 0 <= y and x + w <= 64 + 1e-4 and y + h <= 72 + 1e-4
        assert (entry['category_id'], entry['category_name']) in {(3, 'box'), (7, 'bar')}
    drawn = cv2.imread(str(tmp_path / 'out' / 'img2_boxes.png'))
    assert drawn.shape == (72, 64, 3)
    assert (drawn != cv2.imread(str(image))).any()  # boxes and captions drawn
    with pytest.raises(FileExistsError, match=r'img2_detections\.json exists.*--overwrite'):
        tool('infer').main([str(cfg_file), str(work / 'iter_2.pth'), str(image),
                            '--out-dir', str(tmp_path / 'out'), '--device', 'cpu'])
    rerun = tool('infer').main([str(cfg_file), str(work / 'iter_2.pth'), str(image), '--out-dir',
                                str(tmp_path / 'out'), '--device', 'cpu', '--overwrite'])
    assert sorted(p.name for p in rerun) == ['img2_boxes.png', 'img2_detections.json']


def test_infer_resizes_by_the_configs_img_scale_and_maps_boxes_back(trained):
    from tasks.detection.inference import DetInferencer

    data, work, _ = trained
    cfg = Config.fromfile(str(work / 'retinanet_effb0_nuclei_demo.py'))
    cfg.model.score_thresh = 0.0
    cfg.test_dataloader.dataset.img_scale = 2.0
    inferencer = DetInferencer(cfg, str(work / 'iter_2.pth'), device='cpu')
    image, sample = inferencer.predict(data / 'images' / 'img2.png')  # 72 x 64
    assert image.shape[:2] == (72, 64) and sample.img_shape == (144, 128)
    boxes = sample.pred_boxes.numpy()
    assert len(boxes) and boxes[:, 2].max() <= 64 + 1e-4 and boxes[:, 3].max() <= 72 + 1e-4
    assert boxes[:, 2].max() > 40  # mapped back from network pixels, not clipped there


@pytest.mark.parametrize('config', [DEMO, COCO])
def test_detection_configs_are_valid_and_build(config):
    cfg = Config.fromfile(config)
    check_config(cfg)
    cfg.model.backbone.pretrained = None  # no download in tests
    if config == DEMO:  # classes and channels from the embedded data
        resolve_from_data(cfg)
        assert (cfg.model.num_classes, cfg.model.backbone.in_chans) == (1, 1)
        assert cfg.train_dataloader.dataset.classes == ('nucleus',)
    else:  # COCO's own folder is not here: what its train.json and images would give
        cfg.model.num_classes, cfg.model.backbone.in_chans = 80, 3
    model = MODELS.build(cfg.model)
    assert model.fpn.body.arch == ('b3' if config == COCO else 'b0')
    assert model.fpn.strides == [8, 16, 32, 64, 128]
    assert cfg.task == 'detection'
    assert cfg.val_evaluator.type == 'effnet_backbones.CocoMetric'


def test_the_coco_recipe_has_a_cpu_profile_and_takes_classes_from_the_data(monkeypatch):
    import torch

    from tasks.detection.demo import DEMO_DATA_ROOT
    from tasks.engine import prepare_train_config

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = prepare_train_config(COCO, data_root=str(DEMO_DATA_ROOT), max_iters=30)
    assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (30, 10)
    assert cfg.train_dataloader.batch_size == 2 and cfg.train_dataloader.dataset.img_size == 512
    assert (cfg.model.num_classes, cfg.model.backbone.in_chans) == (1, 1)
