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
