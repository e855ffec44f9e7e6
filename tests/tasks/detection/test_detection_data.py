"""CocoDetDataset and COCO loading: label mapping, negatives, crowd, resizing, augmentation, and
every kind of bad input (clipped, dropped or stopped with an error naming the culprit)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from det_data import ann, image_entry, make_dataset, write_coco
from tasks.common.io import DataError
from tasks.detection import CocoDetDataset, DataWarning, DetDataPreprocessor
from tasks.detection.demo import DEMO_CLASSES, DEMO_DATA_ROOT
from tasks.segmentation.demo import DEMO_DATA_ROOT as SEG_DEMO_ROOT


def boxes_of(sample):
    return sample.gt_boxes.numpy().tolist()


def test_labels_are_contiguous_and_map_back(tmp_path):
    make_dataset(tmp_path)
    ds = CocoDetDataset(str(tmp_path), 'train.json')
    assert ds.metainfo == dict(classes=('box', 'bar'), cat_ids=(3, 7),
                               in_channels=ds.prep.in_channels, normalize=None, img_scale=None)
    sample = ds[0]['data_samples']
    assert sample.gt_labels.tolist() == [0, 1]  # category 3 -> 0, 7 -> 1
    assert [a['category_id'] for a in sample.gt_coco] == [3, 7]
    only_bars = CocoDetDataset(str(tmp_path), 'train.json', classes=('bar',))
    assert only_bars.metainfo['cat_ids'] == (7,)
    assert only_bars[0]['data_samples'].gt_labels.tolist() == [0]
    with pytest.raises(DataError, match=r"classes \['cat'\] are not among its categories"):
        CocoDetDataset(str(tmp_path), 'train.json', classes=('cat',))


def test_negatives_kept_and_crowd_left_out_of_targets(tmp_path):
    images = [image_entry(1, (64, 64)), image_entry(2, (64, 64))]
    write_coco(tmp_path, 'train.json', images,
               [ann(1, 1, (4, 4, 20, 20)), ann(2, 1, (30, 30, 30, 30), iscrowd=1)])
    ds = CocoDetDataset(str(tmp_path), 'train.json')
    assert len(ds) == 2
    negative = ds[1]['data_samples']
    assert negative.gt_boxes.shape == (0, 4) and negative.gt_coco == []
    sample = ds[0]['data_samples']
    assert boxes_of(sample) == [[4, 4, 24, 24]]  # crowd is no training target ...
    assert [a['iscrowd'] for a in sample.gt_coco] == [0, 1]  # ... but COCOeval sees it


def test_letterbox_maps_boxes_both_ways(tmp_path):
    write_coco(tmp_path, 'val.json', [image_entry(1, (100, 150))], [ann(1, 1, (30, 10, 60, 40))])
    ds = CocoDetDataset(str(tmp_path), 'val.json', img_size=64)
    item = ds[0]
    sample = item['data_samples']
    assert item['inputs'].shape == (3, 64, 64) and sample.ori_shape == (100, 150)
    scale = 64 / 150
    assert sample.mapping.scale_x == pytest.approx(scale)
    assert sample.mapping.scale_y == pytest.approx(43 / 100)  # round(100 * scale) rows
    np.testing.assert_allclose(boxes_of(sample), [[30 * scale, 10 * 0.43, 90 * scale, 50 * 0.43]],
                               rtol=1e-5)
    np.testing.assert_allclose(sample.mapping.to_original(sample.gt_boxes).numpy(),
                               [[30, 10, 90, 50]], rtol=1e-5)
    # the letterbox padding (bottom rows) is the normalisation mean: zero after standardising
    stretched = CocoDetDataset(str(tmp_path), 'val.json', img_size=(64, 96), resize='resize')
    s = stretched[0]['data_samples']
    np.testing.assert_allclose(boxes_of(s), [[30 * 96 / 150, 10 * 0.64, 90 * 96 / 150, 50 * 0.64]],
                               rtol=1e-5)


def test_img_scale_resizes_each_image_by_its_factor_and_maps_boxes_back(tmp_path):
    write_coco(tmp_path, 'val.json', [image_entry(1, (100, 150)), image_entry(2, (41, 64))],
               [ann(1, 1, (30, 10, 60, 40)), ann(2, 2, (4, 6, 10, 8))])
    ds = CocoDetDataset(str(tmp_path), 'val.json', img_scale=2.0)
    first, second = ds[0], ds[1]
    assert first['inputs'].shape == (3, 200, 300)  # each image its own size: no canvas
    assert second['inputs'].shape == (3, 82, 128)
    np.testing.assert_allclose(boxes_of(first['data_samples']), [[60, 20, 180, 100]])
    sample = second['data_samples']
    np.testing.assert_allclose(boxes_of(sample), [[8, 12, 28, 28]])
    np.testing.assert_allclose(sample.mapping.to_original(sample.gt_boxes).numpy(),
                               [[4, 6, 14, 14]], rtol=1e-6)
    assert sample.gt_coco[0]['bbox'] == [4, 6, 10, 8]  # COCOeval scores in original pixels
    odd = CocoDetDataset(str(tmp_path), 'val.json', img_scale=1.5)[1]
    assert odd['inputs'].shape == (3, 62, 96)  # round(41 * 1.5): the mapping is the grid's own
    assert odd['data_samples'].mapping.scale_y == pytest.approx(62 / 41)
    assert ds.metainfo['img_scale'] == 2.0  # kept in checkpoints for test.py and infer.py


@pytest.mark.parametrize('options,pattern', [
    (dict(img_scale=0), r'img_scale must be a number in \(0, 16\]'),
    (dict(img_scale='2x'), 'img_scale must be a number'),
    (dict(img_scale=2.0, img_size=256), 'img_scale=2.0 and img_size=.256, 256. both set'),
    (dict(img_scale='auto'), "img_scale='auto' is chosen from the training boxes by the tools"),
])
def test_img_scale_bad_values_are_named(tmp_path, options, pattern):
    write_coco(tmp_path, 'val.json', [image_entry(1, (64, 64))], [ann(1, 1, (4, 4, 8, 8))])
    with pytest.raises(ValueError, match=pattern):
        CocoDetDataset(str(tmp_path), 'val.json', **options)


def small_boxes_config(root, side, img_scale='auto'):
    """The small-object recipe on a set of ``side`` px boxes, ``img_scale`` on every split."""
    from mmengine.config import Config
    from tool_loader import CONFIGS
    images = [image_entry(1, (96, 96)), image_entry(2, (96, 96))]
    boxes = [ann(k + 1, 1 + k % 2, (10 + 20 * (k // 2), 10, side, side)) for k in range(6)]
    write_coco(root, 'train.json', images, boxes)
    write_coco(root, 'val.json', images, boxes)
    cfg = Config.fromfile(str(CONFIGS / 'retinanet_effb0_nuclei_demo.py'))
    for split in ('train', 'val', 'test'):
        dataset = cfg[f'{split}_dataloader'].dataset
        dataset.data_root, dataset.img_scale = str(root), img_scale
    return cfg


def scales(cfg):
    return [cfg[f'{split}_dataloader'].dataset.img_scale for split in ('train', 'val', 'test')]


@pytest.mark.parametrize('median,scale', [(13, 2.0), (8, 3.0), (15.9, 1.5), (16, 1.0), (40, 1.0),
                                          (2, 4.0)])
def test_auto_img_scale_enlarges_objects_below_the_smallest_anchor(median, scale):
    from tasks.detection.data_config import auto_img_scale
    assert auto_img_scale(median) == scale


def test_img_scale_auto_follows_the_training_boxes_or_the_checkpoint(tmp_path):
    from mmengine.config import Config
    from tasks.engine.data import resolve_from_data
    from tool_loader import CONFIGS
    for recipe in ('retinanet_effb0_nuclei_demo.py', 'efficientdet_d0_nuclei_demo.py'):
        assert scales(Config.fromfile(str(CONFIGS / recipe))) == ['auto'] * 3  # as shipped
    cfg = small_boxes_config(tmp_path / 'small', side=8)
    resolve_from_data(cfg)
    assert scales(cfg) == [3.0, 3.0, 3.0]  # 8 px boxes towards the recipe's 24 px
    large = small_boxes_config(tmp_path / 'large', side=20)
    resolve_from_data(large)
    assert scales(large) == [1.0, 1.0, 1.0]
    trained = small_boxes_config(tmp_path / 'small', side=8)
    resolve_from_data(trained, dict(dataset_meta=dict(img_scale=2.0)))
    assert scales(trained) == [2.0, 2.0, 2.0]  # what training used, whatever the data says now
    older = small_boxes_config(tmp_path / 'small', side=8)
    resolve_from_data(older, dict(dataset_meta=dict(classes=('box',), in_channels=3)))
    assert scales(older) == [1.0, 1.0, 1.0]  # trained before img_scale existed: own size
    fixed = small_boxes_config(tmp_path / 'small', side=8, img_scale=1.5)
    resolve_from_data(fixed)
    assert scales(fixed) == [1.5, 1.5, 1.5]  # a number is the user's choice


def test_augmentation_moves_boxes(tmp_path):
    write_coco(tmp_path, 'train.json', [image_entry(1, (64, 80))], [ann(1, 1, (10, 8, 20, 16))])
    flipped = CocoDetDataset(str(tmp_path), 'train.json',
                             pipeline=[dict(type='HorizontalFlip', p=1.0)])
    item = flipped[0]
    assert boxes_of(item['data_samples']) == [[50, 8, 70, 24]]  # x -> 80 - x
    assert item['inputs'][0, 16, 55] > item['inputs'][0, 16, 15]  # pixels moved too
    jittered = CocoDetDataset(str(tmp_path), 'train.json', img_size=64, scale_jitter=(0.5, 2.0),
                              pipeline=[dict(type='RandomBrightnessContrast', p=1.0)])
    for _ in range(5):
        item = jittered[0]
        assert item['inputs'].shape == (3, 64, 64)  # cropped or padded back to img_size
        boxes = item['data_samples'].gt_boxes
        assert ((boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= 64).all())


def test_batches_of_different_sizes(tmp_path):
    make_dataset(tmp_path)
    ds = CocoDetDataset(str(tmp_path), 'train.json')
    batch = DetDataPreprocessor()(dict(inputs=[ds[0]['inputs'], ds[1]['inputs']],
                                       data_samples=[ds[0]['data_samples'], ds[1]['data_samples']]))
    assert [tuple(t.shape) for t in batch['inputs']] == [(3, 64, 80), (3, 72, 64)]


def test_boxes_outside_and_degenerate_are_clipped_or_dropped_with_counts(tmp_path):
    anns = [ann(1, 1, (-5, 10, 20, 20)), ann(2, 1, (50, 50, 30, 30)),  # partly outside: clipped
            ann(3, 1, (10, 10, 0, 5)), ann(4, 1, (10, 10, 5, -3)),  # zero / negative size: dropped
            ann(5, 1, (100, 100, 10, 10)), ann(6, 1, (5, 5, 10, 10))]  # entirely outside: dropped
    write_coco(tmp_path, 'train.json', [image_entry(1, (64, 64))], anns, draw_boxes=False)
    with pytest.warns(DataWarning) as caught:
        ds = CocoDetDataset(str(tmp_path), 'train.json')
    message = str(caught[0].message)
    assert 'train.json' in message
    assert 'clipped 2 box(es) partly outside their image (annotation ids 1, 2)' in message
    assert ('dropped 2 box(es) with zero or negative width or height (annotation ids 3, 4)'
            in message)
    assert 'dropped 1 box(es) entirely outside their image (annotation ids 5)' in message
    assert boxes_of(ds[0]['data_samples']) == [[0, 10, 15, 30], [50, 50, 64, 64], [5, 5, 15, 15]]


def _coco_file(tmp_path, mutate):
    make_dataset(tmp_path)
    path = tmp_path / 'train.json'
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize('mutate, pattern', [
    (lambda d: d['annotations'][1].update(category_id=99),
     r'train\.json: annotation id 2 has unknown category_id 99'),
    (lambda d: d['annotations'][2].pop('bbox'), r"train\.json: annotation id 3 has no 'bbox' key"),
    (lambda d: d['annotations'][0].update(bbox=[1, 2, 3]),
     r'train\.json: annotation id 1 has bbox=\[1, 2, 3\]'),
    (lambda d: d['annotations'][0].update(image_id=42),
     r'annotation id 1 refers to image_id 42, which is not in "images"'),
    (lambda d: d['annotations'][3].update(id=1), r'annotations id 1 appears more than once'),
    (lambda d: d['images'][0].pop('width'), r"train\.json: image id 1 has no 'width' key"),
    (lambda d: d.pop('categories'), r"train\.json has no 'categories' key"),
    (lambda d: d['annotations'][0].update(iscrowd=2), r'annotation id 1 has iscrowd=2'),
])
def test_malformed_annotations_name_the_culprit(tmp_path, mutate, pattern):
    _coco_file(tmp_path, mutate)
    with pytest.raises(DataError, match=pattern):
        CocoDetDataset(str(tmp_path), 'train.json')


def test_invalid_json_names_file_and_position(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / 'train.json').write_text('{"images": [1, 2,,]}')
    with pytest.raises(DataError, match=r'train\.json is not valid JSON: .* line 1, column 18'):
        CocoDetDataset(str(tmp_path), 'train.json')
    with pytest.raises(DataError, match=r'nothing\.json not found'):
        CocoDetDataset(str(tmp_path), 'nothing.json')


def test_missing_image_file_is_named(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / 'images' / 'img2.png').unlink()
    with pytest.raises(DataError, match=r'1 image file\(s\) named in .*train\.json do not exist: '
                                        r'.*img2\.png'):
        CocoDetDataset(str(tmp_path), 'train.json', verify='files')


def test_recorded_size_differs_from_file(tmp_path):
    make_dataset(tmp_path)
    cv2.imwrite(str(tmp_path / 'images' / 'img2.png'), np.zeros((40, 50, 3), np.uint8))
    expected = (r'image .*img2\.png is 50 x 40 px \(W x H\) but .*train\.json records width=64, '
                r'height=72 for image id 2')
    with pytest.raises(DataError, match=expected):
        CocoDetDataset(str(tmp_path), 'train.json')  # verify='full': at start-up
    ds = CocoDetDataset(str(tmp_path), 'train.json', verify='files')
    ds[0]
    with pytest.raises(DataError, match=expected):
        ds[1]  # and again when the image is loaded


def test_embedded_demo_set():
    ds = CocoDetDataset(str(DEMO_DATA_ROOT), 'val.json', classes=DEMO_CLASSES, in_channels=1,
                        normalize=dict(mode='minmax', percentiles=(0.5, 99.8)))
    train = CocoDetDataset(str(DEMO_DATA_ROOT), 'train.json', classes=DEMO_CLASSES, in_channels=1)
    assert (len(train), len(ds)) == (4, 2)
    assert sum(len(r.boxes) for r in train.records) == 95
    assert sum(len(r.boxes) for r in ds.records) == 33
    size = sum(f.stat().st_size for f in Path(DEMO_DATA_ROOT).rglob('*') if f.is_file())
    assert size < 2 * 1024 ** 2
    # every box frames a nucleus of the segmentation demo's mask for the same tile
    for record in ds.records:
        mask = cv2.imread(str(Path(SEG_DEMO_ROOT) / 'val' / 'masks' / record.path.name),
                          cv2.IMREAD_UNCHANGED)
        for x1, y1, x2, y2 in record.boxes.astype(int):
            inside = mask[y1:y2, x1:x2] > 0
            assert inside.mean() > 0.4  # mostly nucleus
            edges = (inside[0], inside[-1], inside[:, 0], inside[:, -1])
            assert all(edge.any() for edge in edges)  # tight: nucleus on every side
