"""Every shipped segmentation recipe is a template: with only --data-root (and --max-iters) it
trains on a folder whatever its classes and channels, printing what it took from the data."""
import json

import cv2
import numpy as np
import pytest
import tifffile
import torch

from seg_data import binary, five_classes, write_set
from tasks.common.io import DataError
from tasks.engine import load_from_local, prepare_train_config
from tasks.segmentation import data_config
from tool_loader import CONFIGS, cfg_options, run_train_tool

TINY = {  # the recipes as they are, only smaller: 2 images of 64 px per batch, no workers
    'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
    'train_dataloader.persistent_workers': False, 'train_dataloader.dataset.crop_size': 64,
    'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False,
    'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False,
    'model.decoder_options.decoder_channels': [16, 16, 16, 16, 16],
}


def five_class_json(root):
    write_set(root, five_classes)
    labels = {name: index for index, name in enumerate(('background', 'a', 'b', 'c', 'd'))}
    (root / 'dataset.json').write_text(json.dumps({'labels': labels}))
    return root


def gray16_tiffs(root):
    return write_set(root, binary, lambda mask, seed: mask.astype(np.uint16) * 3000 + 500,
                     suffix='.tif')


def rgb_classes_txt(root):
    write_set(root, five_classes, lambda mask, seed: np.dstack([mask * 50, mask * 20, 255 - mask * 40])
              .astype(np.uint8))
    (root / 'classes.txt').write_text('background\na\nb\nc\nd\n')
    return root


CASES = [  # recipe, data, expected classes, channels
    ('unet_effb4_medical.py', lambda root: write_set(root, binary), ('background', 'class_1'), 1),
    ('unet_effb0_quick.py', five_class_json, ('background', 'a', 'b', 'c', 'd'), 1),
    ('unet_effb0_quick.py', gray16_tiffs, ('background', 'class_1'), 1),
    ('grow/unet_grow_b0.py', rgb_classes_txt, ('background', 'a', 'b', 'c', 'd'), 3),
]


@pytest.mark.parametrize('recipe,make,classes,channels', CASES,
                         ids=['b4-binary', 'b0-json', 'b0-tiff16', 'grow-rgb-txt'])
def test_a_recipe_trains_on_a_folder_with_only_data_root(tmp_path, recipe, make, classes,
                                                         channels, monkeypatch):
    logged = []  # MMEngine's 'current' logger may still be a finished run's: record the calls
    monkeypatch.setattr(data_config, 'print_log', lambda message, **_: logged.append(message))
    data = make(tmp_path / 'data')
    work = tmp_path / 'work'
    runner = run_train_tool(CONFIGS / recipe, data, work, 2,
                            *cfg_options(TINY, f'own_{tmp_path.name}'))
    assert runner.iter == 2
    model = runner.model
    assert model.num_classes == len(classes) and model.net.encoder.backbone.in_chans == channels
    meta = load_from_local(str(work / 'iter_2.pth'))['meta']['dataset_meta']
    assert tuple(meta['classes']) == classes and meta['in_channels'] == channels
    summary = logged[0]
    assert f'classes ({len(classes)}, from' in summary and 'train pixels per class' in summary
    assert 'train: 2 images' in summary and f'channels: {channels}' in summary


def test_a_config_that_disagrees_with_the_data_names_key_and_values(tmp_path):
    data = write_set(tmp_path / 'data', binary)
    with pytest.raises(DataError, match=r'model.num_classes=3 but the data gives 2'):
        prepare_train_config(str(CONFIGS / 'unet_effb0_quick.py'), data_root=str(data),
                             work_dir=str(tmp_path / 'work'),
                             cfg_options={'model.num_classes': 3})
    assert not (tmp_path / 'work').exists()  # nothing is written by a run that fails its check


def test_bad_data_stops_before_anything_is_written(tmp_path):
    data = write_set(tmp_path / 'data', five_classes)
    (data / 'classes.txt').write_text('background\nfg\n')
    with pytest.raises(DataError, match=r'holds value 2, but .*classes.txt declares 2 classes'):
        prepare_train_config(str(CONFIGS / 'unet_effb0_quick.py'), data_root=str(data),
                             work_dir=str(tmp_path / 'work'))
    assert not (tmp_path / 'work').exists()


def test_the_test_tool_takes_the_classes_from_the_checkpoint(tmp_path):
    from tool_loader import tool

    data = five_class_json(tmp_path / 'data')
    work = tmp_path / 'work'
    torch.manual_seed(0)
    run_train_tool(CONFIGS / 'unet_effb0_quick.py', data, work, 2, *cfg_options(TINY, 'own_test'))
    out = tmp_path / 'metrics.json'
    tool('test').main([str(CONFIGS / 'unet_effb0_quick.py'), str(work / 'iter_2.pth'),
                       '--data-root', str(data), '--out', str(out), '--work-dir', str(tmp_path),
                       *cfg_options(TINY, 'own_tested')])
    metrics = json.loads(out.read_text())
    assert {f'Dice.{name}' for name in 'abcd'} <= set(metrics)


# ----------------------------------------------------------------------------- detection (COCO)
THREE = [dict(id=3, name='cell'), dict(id=7, name='debris'), dict(id=9, name='bubble')]
DET_TINY = {'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False}


def coco_set(root, gray):
    """train.json / val.json with categories of ids 3, 7, 9; RGB or grayscale images."""
    from det_data import ann, image_entry, write_coco

    def split(name, first_id):
        images = [image_entry(first_id + k, (96, 96)) for k in range(2)]
        anns = [ann(first_id * 10 + k, first_id + k % 2, (8 + 20 * k, 10, 18, 22),
                    cat=(3, 7, 9)[k % 3]) for k in range(4)]
        write_coco(root, name, images, anns, categories=THREE)
        if gray:  # rewrite the images as single-channel PNGs
            for image in images:
                path = root / 'images' / image['file_name']
                cv2.imwrite(str(path), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    split('train.json', 1)
    split('val.json', 11)
    return root


@pytest.mark.parametrize('gray', [False, True], ids=['rgb-3-classes', 'gray'])
def test_the_cpu_retinanet_recipe_trains_on_a_coco_folder(tmp_path, gray):
    data = coco_set(tmp_path / 'coco', gray)
    work = tmp_path / 'work'
    runner = run_train_tool(CONFIGS / 'retinanet_effb0_nuclei_demo.py', data, work, 2,
                            *cfg_options(DET_TINY, f'own_det_{gray}'))
    assert runner.iter == 2
    meta = load_from_local(str(work / 'iter_2.pth'))['meta']['dataset_meta']
    assert tuple(meta['classes']) == ('cell', 'debris', 'bubble') and tuple(meta['cat_ids']) == (3, 7, 9)
    assert meta['in_channels'] == (1 if gray else 3)
    assert runner.model.detector.backbone.body.in_chans == meta['in_channels']


def test_coco_train_and_val_with_other_categories_stop_before_training(tmp_path):
    data = coco_set(tmp_path / 'coco', gray=False)
    val = json.loads((data / 'val.json').read_text())
    val['categories'] = val['categories'][:2]
    val['annotations'] = [a for a in val['annotations'] if a['category_id'] != 9]
    (data / 'val.json').write_text(json.dumps(val))
    with pytest.raises(DataError, match=r"val.json has the categories \['cell', 'debris'\] but "):
        prepare_train_config(str(CONFIGS / 'retinanet_effb0_nuclei_demo.py'), data_root=str(data),
                             work_dir=str(tmp_path / 'work'))


def test_check_data_lists_every_coco_problem(tmp_path, capsys):
    from det_data import ann, image_entry, write_coco
    from tool_loader import tool

    good = coco_set(tmp_path / 'good', gray=False)
    assert tool('check_data').main([str(good)]) == 0  # train.json present: the COCO check
    out = capsys.readouterr().out
    assert 'classes (3, from train.json): cell (id 3), debris (id 7), bubble (id 9)' in out
    assert 'channels: 3' in out and 'train: 2 images, 4 boxes' in out
    bad = tmp_path / 'bad'
    images = [image_entry(1, (64, 64)), image_entry(2, (64, 64))]
    write_coco(bad, 'train.json', images, [ann(1, 1, (50, 50, 30, 30)), ann(2, 2, (5, 5, 0, 9))],
               categories=THREE)
    (bad / 'images' / 'img2.png').unlink()  # a missing image
    write_coco(bad, 'val.json', [image_entry(3, (64, 64))], [], categories=THREE[:1])
    assert tool('check_data').main([str(bad), '--task', 'det']) == 1
    out = capsys.readouterr().out
    assert 'clipped 1 box(es) partly outside' in out and 'zero or negative width' in out
    assert 'img2.png, which does not exist' in out
    assert "val.json has the categories ['cell'] but" in out


def test_check_data_reports_object_sizes_and_advises_on_small_dense_objects(tmp_path, capsys):
    from det_data import ann, image_entry, write_coco
    from tool_loader import tool

    assert tool('check_data').main([str(coco_set(tmp_path / 'good', gray=False))]) == 0
    out = capsys.readouterr().out
    assert 'median 20 px' in out and 'most boxes in one image: 2' in out and 'note:' not in out
    dense = tmp_path / 'dense'  # 120 boxes of 8 x 8 px in one 240 x 240 image
    boxes = [ann(k + 1, 1, (20 * (k % 12), 20 * (k // 12), 8, 8)) for k in range(120)]
    write_coco(dense, 'train.json', [image_entry(1, (240, 240))], boxes)
    write_coco(dense, 'val.json', [image_entry(2, (240, 240))], [ann(200, 2, (10, 10, 8, 8))])
    assert tool('check_data').main([str(dense)]) == 0  # advice, not problems
    out = capsys.readouterr().out
    assert 'median 8 px' in out and 'most boxes in one image: 120' in out
    assert ('note: an image of train.json holds 120 boxes' in out
            and 'model.detections_per_img=200 val_evaluator.max_dets=200' in out)
    assert 'note: the median box side of train.json is 8 px' in out and 'about 3x' in out


def test_dataset_normalisation_is_measured_once_and_kept_in_the_checkpoint(tmp_path):
    from mmengine.config import Config
    from tasks.common.intensity import dataset_normalization
    from tasks.segmentation.inference import SegInferencer

    data = gray16_tiffs(tmp_path / 'data')
    work = tmp_path / 'work'
    # the recipe's normalize keeps its percentiles (0.5, 99.8), which mode 'dataset' uses
    measure = {f'{split}_dataloader.dataset.normalize.mode': 'dataset'
               for split in ('train', 'val', 'test')}
    cfg = prepare_train_config(str(CONFIGS / 'unet_effb0_quick.py'), data_root=str(data),
                               work_dir=str(work), cfg_options={**TINY, **measure})
    resolved = cfg.train_dataloader.dataset.normalize
    assert resolved.mode == 'window' and cfg.val_dataloader.dataset.normalize == resolved
    images = [tifffile.imread(path)[..., None] for path in sorted((data / 'train/images').iterdir())]
    expected = dataset_normalization(images, (0.5, 99.8))
    assert resolved.center == pytest.approx(expected['center'])
    assert resolved.mean == pytest.approx(expected['mean']) and resolved.std == pytest.approx(expected['std'])
    run_train_tool(CONFIGS / 'unet_effb0_quick.py', data, work, 2,
                   *cfg_options({**TINY, **measure}, 'own_norm'))
    meta = load_from_local(str(work / 'iter_2.pth'))['meta']['dataset_meta']
    assert meta['normalize']['center'] == pytest.approx(expected['center'])
    # inference with the config (mode='dataset') applies the checkpoint's numbers
    config = Config.fromfile(str(CONFIGS / 'unet_effb0_quick.py'))
    config.merge_from_dict({**TINY, **measure})
    inferencer = SegInferencer(config, str(work / 'iter_2.pth'))
    assert inferencer.norm.mode == 'window' and inferencer.norm.center == pytest.approx(expected['center'])


def test_dataset_normalisation_for_a_coco_set(tmp_path):
    from tasks.common.intensity import dataset_normalization

    data = coco_set(tmp_path / 'coco', gray=True)
    measure = {f'{split}_dataloader.dataset.normalize.mode': 'dataset'
               for split in ('train', 'val', 'test')}
    work = tmp_path / 'work'
    runner = run_train_tool(CONFIGS / 'retinanet_effb0_nuclei_demo.py', data, work, 2,
                            *cfg_options({**DET_TINY, **measure}, 'own_det_norm'))
    images = [cv2.imread(str(data / 'images' / f'img{k}.png'), cv2.IMREAD_UNCHANGED)[..., None]
              for k in (1, 2)]
    expected = dataset_normalization(images, (0.5, 99.8))  # the recipe's percentiles
    resolved = runner.cfg.train_dataloader.dataset.normalize
    assert resolved.mode == 'window' and resolved.center == pytest.approx(expected['center'])
    meta = load_from_local(str(work / 'iter_2.pth'))['meta']['dataset_meta']
    assert meta['normalize']['mean'] == pytest.approx(expected['mean'])
