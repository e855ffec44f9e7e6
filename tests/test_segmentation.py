"""Segmentation task: reading, normalising, augmenting, the dataset's checks, the model's padding,
losses, the metric, and the demo data."""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch

from effnet_backbones.registry import MODELS
from seg_data import CLASSES, blob_pair, make_dataset
from tasks.segmentation import SegFolderDataset, SegMetric, SegSample
from tasks.segmentation.augment import apply_pipeline, build_pipeline
from tasks.segmentation.demo import DEMO_CLASSES, DEMO_DATA_ROOT, instances_to_classes
from tasks.segmentation.intensity import IntensityNorm
from tasks.segmentation.io import DataError, read_image, read_mask
from tasks.segmentation.metrics import confusion_matrix, dice_iou


def dataset(root, split='train', **kwargs):
    return SegFolderDataset(str(root), split=split, classes=CLASSES, in_channels=1, **kwargs)


def tiny_model(**kwargs):
    cfg = dict(type='effnet_backbones.SegmentationModel', arch='b0', in_channels=1, num_classes=3,
               decoder_options=dict(decoder_channels=(16, 16, 16, 16, 16)))
    return MODELS.build({**cfg, **kwargs})


# ------------------------------------------------------------------ reading and normalising
@pytest.mark.parametrize('suffix,array', [
    ('.png', np.arange(48, dtype=np.uint8).reshape(6, 8)),
    ('.png', (np.arange(48, dtype=np.uint16) * 1000).reshape(6, 8)),
    ('.tif', (np.arange(48, dtype=np.uint16) * 1000).reshape(6, 8)),
    ('.tif', np.random.rand(6, 8, 3).astype(np.float32)),
])
def test_read_image_keeps_depth_and_layout(tmp_path, suffix, array):
    path = tmp_path / f'img{suffix}'
    if suffix == '.tif':
        tifffile.imwrite(path, array, photometric='rgb' if array.ndim == 3 else 'minisblack')
    else:
        cv2.imwrite(str(path), array)
    image = read_image(path)
    assert image.dtype == array.dtype
    assert image.shape == (6, 8, 1 if array.ndim == 2 else 3)
    assert np.array_equal(image.reshape(array.shape), array)


def test_read_image_rgb_png_is_rgb(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / 'red.png'), rgb[..., ::-1])
    assert read_image(tmp_path / 'red.png')[0, 0].tolist() == [200, 0, 0]


def test_intensity_modes():
    image = np.array([[0, 50], [100, 200]], np.uint16)[:, :, None]
    assert IntensityNorm('fixed').to_unit(image).max() == pytest.approx(200 / 65535)
    assert IntensityNorm('minmax').to_unit(image)[..., 0].tolist() == [[0, 0.25], [0.5, 1.0]]
    window = IntensityNorm('window', center=100, width=100, intercept=0).to_unit(image)
    assert window[..., 0].tolist() == [[0, 0], [0.5, 1.0]]
    norm = IntensityNorm('minmax', mean=0.5, std=0.25)
    assert norm.standardize(norm.to_unit(image))[..., 0].tolist() == [[-2, -1], [0, 2]]
    with pytest.raises(ValueError, match='window'):
        IntensityNorm('window')


def test_pipeline_moves_image_and_mask_together():
    image = np.arange(12, dtype=np.float32).reshape(3, 4, 1) / 12
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    pipeline = build_pipeline([dict(type='HorizontalFlip', p=1.0),
                               dict(type='OneOf', p=1.0, transforms=[dict(type='VerticalFlip', p=1.0)])])
    out_image, out_mask = apply_pipeline(pipeline, image, mask)
    assert np.array_equal(out_mask, mask[::-1, ::-1])
    assert np.allclose(out_image[..., 0] * 12, out_mask)


def test_crop_pads_mask_with_ignore():
    pipeline = build_pipeline(crop_size=(8, 8), ignore_index=255)
    image, mask = apply_pipeline(pipeline, np.ones((4, 6, 1), np.float32), np.ones((4, 6), np.uint8))
    assert image.shape == (8, 8, 1) and mask.shape == (8, 8)
    assert (mask == 255).sum() == 64 - 24 and (mask == 1).sum() == 24


def test_unknown_pipeline_step_is_named():
    with pytest.raises(ValueError, match='HorizontalFlipp'):
        build_pipeline([dict(type='HorizontalFlipp')])


# ------------------------------------------------------------------ dataset
def test_dataset_items(tmp_path):
    root = make_dataset(tmp_path)
    data = dataset(root, normalize=dict(mode='minmax'), crop_size=32,
                   pipeline=[dict(type='HorizontalFlip', p=0.5)])
    assert len(data) == 2 and data.metainfo['classes'] == CLASSES
    item = data[0]
    assert item['inputs'].shape == (1, 32, 32) and item['inputs'].dtype == torch.float32
    sample = item['data_samples']
    assert sample.img_shape == (32, 32) and sample.gt_mask.dtype == torch.int64
    assert set(sample.gt_mask.unique().tolist()) <= {0, 1, 2, 255}
    rgb = SegFolderDataset(str(root), split='val', classes=CLASSES, in_channels=3)
    assert rgb[0]['inputs'].shape == (3, 50, 70)


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


BAD_INPUTS = {
    # name: (how to break a good dataset, the file or folder the message must name, a phrase)
    'image without mask': (lambda r: (r / 'train/masks/s1.png').unlink(), 's1.png', 'no mask'),
    'mask without image': (lambda r: (r / 'train/images/s1.png').unlink(), 's1.png', 'no image'),
    'size mismatch': (lambda r: cv2.imwrite(str(r / 'train/masks/s1.png'), np.zeros((10, 10), np.uint8)),
                      's1.png', 'must match'),
    'bad mask values': (lambda r: cv2.imwrite(str(r / 'train/masks/s0.png'), np.full((64, 80), 7, np.uint8)),
                        's0.png', 'class indices 0..2 or 255'),
    'corrupt image': (lambda r: _corrupt(r / 'train/images/s0.png'), 's0.png', 'cannot read'),
    'corrupt mask': (lambda r: _corrupt(r / 'train/masks/s0.png'), 's0.png', 'cannot read'),
    'empty split': (lambda r: [p.unlink() for p in (r / 'train/images').iterdir()], 'train/images',
                    'empty'),
    'missing split': (lambda r: [p.unlink() for p in (r / 'train/masks').iterdir()]
                      and (r / 'train/masks').rmdir(), 'train/masks', 'not found'),
    'colour mask': (lambda r: cv2.imwrite(str(r / 'train/masks/s0.png'), np.zeros((64, 80, 3), np.uint8)),
                    's0.png', 'one class index per pixel'),
}


@pytest.mark.parametrize('case', list(BAD_INPUTS))
def test_bad_data_names_the_file(tmp_path, case):
    root = make_dataset(tmp_path)
    breaker, named, phrase = BAD_INPUTS[case]
    breaker(root)
    with pytest.raises(DataError) as info:
        dataset(root)
    assert named in str(info.value) and phrase in str(info.value)


def test_wrong_data_root_and_nan_image(tmp_path):
    with pytest.raises(DataError, match='does not exist'):
        dataset(tmp_path / 'nowhere')
    root = make_dataset(tmp_path)
    image = np.full((64, 80), np.nan, np.float32)
    (root / 'train/images/s0.png').unlink()
    tifffile.imwrite(root / 'train/images/s0.tif', image)
    with pytest.raises(DataError, match='s0.tif.*NaN'):
        dataset(root)


def test_verify_pairs_defers_content_checks_to_loading(tmp_path):
    root = make_dataset(tmp_path)
    cv2.imwrite(str(root / 'train/masks/s1.png'), np.full((72, 64), 9, np.uint8))
    data = dataset(root, verify='pairs')
    data[0]
    with pytest.raises(DataError, match='s1.png'):
        data[1]


# ------------------------------------------------------------------ model
def test_any_input_size_is_padded_and_cropped_back():
    model = tiny_model()
    samples = [SegSample('a', (50, 70), gt_mask=torch.randint(0, 3, (50, 70))),
               SegSample('b', (64, 40), gt_mask=torch.randint(0, 3, (64, 40)))]
    batch = model.data_preprocessor(dict(inputs=[torch.randn(1, 50, 70), torch.randn(1, 64, 40)],
                                         data_samples=samples))
    assert batch['inputs'].shape == (2, 1, 64, 96)
    losses = model(**batch, mode='loss')  # training on sizes that are not multiples of 32
    assert all(torch.isfinite(value) for value in losses.values())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 250, 333)).shape == (1, 3, 250, 333)
        predicted = model(**batch, mode='predict')
    assert [tuple(s.pred_mask.shape) for s in predicted] == [(50, 70), (64, 40)]


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = tiny_model()
    images, masks = zip(*(_blob_tensor(seed) for seed in range(2)))
    samples = [SegSample(f'{i}', (64, 64), gt_mask=m) for i, m in enumerate(masks)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        loss = sum(model(torch.stack(images), samples, mode='loss').values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def _blob_tensor(seed):
    image, mask = blob_pair((64, 64), seed)
    return torch.from_numpy(image[None].astype(np.float32) / 4000), torch.from_numpy(mask.astype(np.int64))


def test_class_count_mismatch_is_explained():
    model = tiny_model(num_classes=2)
    sample = SegSample('x.png', (32, 32), gt_mask=torch.full((32, 32), 2))
    with pytest.raises(ValueError, match='num_classes'):
        model(torch.randn(1, 1, 32, 32), [sample], mode='loss')


# ------------------------------------------------------------------ losses
@pytest.mark.parametrize('loss_type,channels', [('DiceLoss', 3), ('CrossEntropyLoss', 3),
                                                ('BCELoss', 3), ('BCELoss', 1), ('DiceLoss', 1)])
def test_losses_ignore_255(loss_type, channels):
    loss = MODELS.build(dict(type=f'effnet_backbones.{loss_type}'))
    target = torch.randint(0, 2 if channels == 1 else 3, (2, 8, 8))
    target[:, :4] = 255
    logits = torch.randn(2, channels, 8, 8, requires_grad=True)
    changed = logits.detach().clone()
    changed[:, :, :4] = 100.0  # only ignored pixels differ
    value = loss(logits, target)
    assert math.isfinite(value.item())
    assert torch.allclose(value, loss(changed, target))
    value.backward()
    assert logits.grad[:, :, :4].abs().max() == 0
    all_ignored = loss(logits, torch.full((2, 8, 8), 255))
    assert all_ignored.item() == 0.0


# ------------------------------------------------------------------ metric
def test_metric_dice_iou_and_ignore():
    gt = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    matrix = confusion_matrix(pred, gt, 3, 255)
    assert matrix.sum() == 6  # the two ignored pixels are not counted
    dice, iou = dice_iou(matrix)
    assert np.allclose(dice, [2 * 1 / 4, 2 * 2 / 5, 2 * 1 / 3])
    assert np.allclose(iou, [1 / 3, 2 / 3, 1 / 2])
    metric = SegMetric()
    metric.dataset_meta = dict(classes=('bg', 'a', 'b', 'absent'))
    metric.process({}, [SegSample('x', (2, 4), gt_mask=gt, pred_mask=pred)])
    results = metric.compute_metrics(metric.results)
    assert math.isnan(results['Dice.absent'])  # absent from ground truth and prediction
    assert results['mDice'] == pytest.approx(np.mean(dice))
    assert results['mIoU'] == pytest.approx(np.mean(iou))
    assert results['aAcc'] == pytest.approx(4 / 6)


# ------------------------------------------------------------------ demo data
def test_demo_data_is_shipped_and_valid():
    files = [p for p in DEMO_DATA_ROOT.rglob('*') if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2 * 1024 ** 2
    assert (DEMO_DATA_ROOT / 'LICENSE-stardist.txt').read_text().startswith('BSD 3-Clause')
    for split, count in (('train', 4), ('val', 2)):
        data = SegFolderDataset(str(DEMO_DATA_ROOT), split=split, classes=DEMO_CLASSES, in_channels=1)
        assert len(data) == count
    mask = read_mask(DEMO_DATA_ROOT / 'val/masks/nuclei_r392_c000.png')
    assert set(np.unique(mask)) == {0, 1, 2}
    assert read_image(DEMO_DATA_ROOT / 'val/images/nuclei_r392_c000.png').dtype == np.uint16


def test_instances_to_classes_rings_each_instance():
    labels = np.zeros((12, 12), np.int32)
    labels[1:7, 1:7] = 1
    labels[1:7, 7:11] = 2  # touching neighbour
    classes = instances_to_classes(labels, contour_width=1)
    assert classes[0].max() == 0  # background stays
    assert classes[3, 6] == 2 and classes[3, 7] == 2  # the shared border is contour on both sides
    assert classes[3, 3] == 1  # interior
