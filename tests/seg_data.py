"""Tiny synthetic segmentation datasets for the tests: bright disks (class 1) with a rim (class 2)."""
from pathlib import Path
from typing import Sequence, Tuple

import cv2
import tifffile
import numpy as np

CLASSES = ('background', 'blob', 'rim')


def blob_pair(size: Tuple[int, int], seed: int, dtype=np.uint16) -> Tuple[np.ndarray, np.ndarray]:
    """A noisy image with a few disks and its 3-class mask."""
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[:height, :width]
    mask = np.zeros(size, np.uint8)
    for _ in range(3):
        cy, cx, r = rng.integers(8, height - 8), rng.integers(8, width - 8), rng.integers(5, 9)
        dist = np.hypot(yy - cy, xx - cx)
        mask[dist <= r] = 1
        mask[(dist > r - 2) & (dist <= r)] = 2
    peak = 4000 if dtype == np.uint16 else 200
    image = (mask > 0) * peak + rng.normal(peak * 0.1, peak * 0.05, size)
    return np.clip(image, 0, None).astype(dtype), mask


def write_split(root: Path, split: str, sizes: Sequence[Tuple[int, int]], seed: int = 0,
                dtype=np.uint16) -> None:
    """Write ``DATA_ROOT/split/{images,masks}/s<i>.png`` pairs."""
    for kind in ('images', 'masks'):
        (root / split / kind).mkdir(parents=True, exist_ok=True)
    for index, size in enumerate(sizes):
        image, mask = blob_pair(size, seed + index, dtype)
        cv2.imwrite(str(root / split / 'images' / f's{index}.png'), image)
        cv2.imwrite(str(root / split / 'masks' / f's{index}.png'), mask)


def make_dataset(root: Path, train_sizes=((64, 80), (72, 64)), val_sizes=((50, 70),)) -> Path:
    """A train/val dataset in the project layout, its classes named in ``classes.txt``; val sides
    are not multiples of 32."""
    write_split(root, 'train', train_sizes, seed=0)
    write_split(root, 'val', val_sizes, seed=100)
    (root / 'classes.txt').write_text('\n'.join(CLASSES) + '\n')
    return root


def write_set(root: Path, masks_of, image_of=None, suffix='.png', splits=(('train', 2), ('val', 1))):
    """A folder set: ``masks_of(seed)`` gives a mask, ``image_of(mask, seed)`` its image (default:
    8-bit gray), written as ``suffix`` files; ``splits`` are (name, image count)."""
    for split, count in splits:
        for kind in ('images', 'masks'):
            (root / split / kind).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            seed = index + 100 * [name for name, _ in splits].index(split)  # deterministic
            mask = masks_of(seed)
            image = image_of(mask, seed) if image_of else (mask * 60 + 10).astype(np.uint8)
            if suffix == '.tif':
                tifffile.imwrite(root / split / 'images' / f's{index}.tif', image)
            else:
                cv2.imwrite(str(root / split / 'images' / f's{index}{suffix}'), image)
            cv2.imwrite(str(root / split / 'masks' / f's{index}.png'), mask.astype(np.uint8))
    return root


def binary(seed):
    """A 0/1 mask."""
    mask = np.zeros((48, 40), np.uint8)
    mask[8:20, 5 + seed % 10:25] = 1
    return mask


def five_classes(seed):
    """A mask holding the values 0..4."""
    mask = np.zeros((40, 56), np.uint8)
    for value in range(1, 5):
        mask[value * 8:value * 8 + 6, 4:50] = value
    return mask
