"""Tiny synthetic segmentation datasets for the tests: bright disks (class 1) with a rim (class 2)."""
from pathlib import Path
from typing import Sequence, Tuple

import cv2
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
    """A train/val dataset in the project layout; val sides are not multiples of 32."""
    write_split(root, 'train', train_sizes, seed=0)
    write_split(root, 'val', val_sizes, seed=100)
    return root
