"""The embedded segmentation demo: the nuclei image of :mod:`tasks.common.demo` with class masks.

:func:`build_demo_dataset` turns the per-nucleus labels into three classes (background, nucleus,
nucleus contour: the contour class is what separates touching nuclei) and writes the folder layout
every segmentation config reads.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import numpy as np

from ..common.demo import LICENCE_FILE, demo_tiles, read_wheel, write_png

__all__ = ['DEMO_DATA_ROOT', 'DEMO_CLASSES', 'instances_to_classes', 'write_description',
           'build_demo_dataset']

DEMO_DATA_ROOT = Path(__file__).resolve().parent / 'demo_data'
DEMO_CLASSES = ('background', 'nucleus', 'contour')


def instances_to_classes(labels: np.ndarray, contour_width: int = 2) -> np.ndarray:
    """Map a per-instance label image to 0 background, 1 nucleus interior, 2 nucleus contour.

    A pixel is contour if it lies within ``contour_width`` pixels (8-neighbourhood) of a pixel with
    another label, background included.
    """
    labels = labels.astype(np.int64)
    interior = labels > 0
    current = labels
    for _ in range(contour_width):
        padded = np.pad(current, 1, mode='edge')
        height, width = labels.shape
        same = np.ones_like(interior)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                same &= padded[dy:dy + height, dx:dx + width] == labels
        interior &= same
        current = np.where(interior, labels, -1)  # eroded instances, for the next ring
    classes = np.zeros(labels.shape, np.uint8)
    classes[labels > 0] = 2
    classes[interior] = 1
    return classes


def write_description(out_dir: Path = DEMO_DATA_ROOT) -> Path:
    """``out_dir/dataset.json`` in the nnU-Net v2 layout: the demo's class names and its channel."""
    path = Path(out_dir) / 'dataset.json'
    description = {'name': 'nuclei demo (BBBC038 via stardist 0.9.2)',
                   'channel_names': {'0': 'fluorescence'},
                   'labels': {name: index for index, name in enumerate(DEMO_CLASSES)},
                   'file_ending': '.png'}
    path.write_text(json.dumps(description, indent=2) + '\n')
    return path


def build_demo_dataset(wheel: Path, out_dir: Path = DEMO_DATA_ROOT) -> Dict[str, int]:
    """Write the demo dataset from a downloaded stardist wheel; return the tile count per split.

    Images stay 16-bit grayscale PNGs (as in the source), masks are 8-bit class-index PNGs.
    """
    arrays, licence = read_wheel(Path(wheel))
    image = arrays['image'].astype(np.uint16)
    classes = instances_to_classes(arrays['labels'])
    counts: Dict[str, int] = {}
    for split, name, image_tile, mask_tile in demo_tiles(image, classes):
        for kind, tile in (('images', image_tile), ('masks', mask_tile)):
            folder = out_dir / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            write_png(folder / f'{name}.png', tile)
        counts[split] = counts.get(split, 0) + 1
    (out_dir / LICENCE_FILE).write_text(licence)
    write_description(out_dir)
    return counts
