"""SegFolderDataset: items, and every kind of bad data stopped with an error naming the file."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch

from seg_data import CLASSES, make_dataset
from tasks.common.io import DataError
from tasks.segmentation import SegFolderDataset


def dataset(root, split='train', **kwargs):
    return SegFolderDataset(str(root), split=split, classes=CLASSES, in_channels=1, **kwargs)


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


def test_foreground_ratio_puts_small_structures_in_the_crops(tmp_path):
    # a 200 x 200 image whose only foreground is a 3 x 3 rim-class patch in one corner: 24 px
    # random crops almost never hold it, forced ones always do
    for kind in ('images', 'masks'):
        (tmp_path / 'train' / kind).mkdir(parents=True)
    mask = np.zeros((200, 200), np.uint8)
    mask[190:193, 5:8] = 2
    cv2.imwrite(str(tmp_path / 'train' / 'masks' / 'a.png'), mask)
    image = (mask * 100 + 7).astype(np.uint8)
    image[:20, 180:] = 250  # brighter than the patch, far from it: outside every forced crop
    cv2.imwrite(str(tmp_path / 'train' / 'images' / 'a.png'), image)
    plain = dataset(tmp_path, crop_size=24)
    forced = dataset(tmp_path, crop_size=24, foreground_ratio=1.0, normalize=dict(mode='minmax'))
    seen_plain = sum(bool((plain[0]['data_samples'].gt_mask == 2).any()) for _ in range(30))
    seen_forced = [forced[0] for _ in range(30)]
    assert seen_plain < 10
    assert all((item['data_samples'].gt_mask == 2).any() for item in seen_forced)
    # normalised on the whole image before the crop: the patch is (207 - 7) / (250 - 7), not the
    # 1.0 a crop's own min-max would give
    assert all(abs(float(item['inputs'].max()) - 200 / 243) < 1e-3 for item in seen_forced)
    with pytest.raises(ValueError, match='foreground_ratio'):
        dataset(tmp_path, crop_size=24, foreground_ratio=2.0)
    with pytest.raises(ValueError, match='crop_size'):
        dataset(tmp_path, foreground_ratio=0.5)
