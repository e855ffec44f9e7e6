"""The embedded detection demo: boxes around every nucleus of the demo image.

The source is the real fluorescence image and per-nucleus label image of :mod:`tasks.common.demo`
(``stardist/data/images/{img2d,mask2d}.tif`` in the stardist 0.9.2 wheel, BSD-3-Clause; 2018 Data
Science Bowl, BBBC038), cut into the same train and val tiles as the segmentation demo. Each
nucleus becomes one box (its pixels' bounding box within the tile) of the single class 'nucleus';
its COCO ``area`` is its pixel count in the tile. Nuclei cut by a tile border keep their visible
part, unless too little of them is visible to be recognisable.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from ..common.demo import LICENCE_FILE, demo_tiles, read_wheel, write_png

__all__ = ['DEMO_DATA_ROOT', 'DEMO_CLASSES', 'MIN_VISIBLE_FRACTION', 'MIN_SIDE',
           'nucleus_annotations', 'build_detection_demo']

DEMO_DATA_ROOT = Path(__file__).resolve().parent / 'demo_data'
DEMO_CLASSES = ('nucleus',)
CATEGORY_ID = 1
#: a nucleus cut by a tile border is kept if this much of its area and this many pixels per
#: side are visible; slivers would be unlearnable (and unfair) targets
MIN_VISIBLE_FRACTION = 0.3
MIN_SIDE = 4


def nucleus_annotations(labels: np.ndarray, full_areas: np.ndarray) -> List[Dict[str, Any]]:
    """COCO annotation fields (bbox, area, iscrowd) per nucleus visible in a label tile.

    Args:
        labels: the tile of the per-nucleus label image (0 = background).
        full_areas: pixel count of every label in the whole image (index = label).
    """
    annotations = []
    for label in np.unique(labels[labels > 0]):
        rows, cols = np.nonzero(labels == label)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        if rows.size < MIN_VISIBLE_FRACTION * full_areas[label] or min(height, width) < MIN_SIDE:
            continue
        annotations.append(dict(bbox=[int(cols.min()), int(rows.min()), int(width), int(height)],
                                area=int(rows.size), iscrowd=0))
    return annotations


def build_detection_demo(wheel: Path, out_dir: Path = DEMO_DATA_ROOT) -> Dict[str, int]:
    """Write ``images/``, ``train.json`` and ``val.json``; return the box count per split."""
    arrays, licence = read_wheel(Path(wheel))
    image, labels = arrays['image'].astype(np.uint16), arrays['labels'].astype(np.int64)
    full_areas = np.bincount(labels.ravel())
    splits: Dict[str, Dict[str, Any]] = {}
    (out_dir / 'images').mkdir(parents=True, exist_ok=True)
    for img_id, (split, name, image_tile, label_tile) in enumerate(demo_tiles(image, labels), 1):
        file_name = f'{name}.png'
        write_png(out_dir / 'images' / file_name, image_tile)
        coco = splits.setdefault(split, dict(
            info=dict(description=f'nuclei detection demo ({split}), from the stardist wheel',
                      licence='BSD-3-Clause (stardist); image CC0 (BBBC038)'),
            images=[], annotations=[],
            categories=[dict(id=CATEGORY_ID, name=DEMO_CLASSES[0], supercategory='cell')]))
        height, width = image_tile.shape
        coco['images'].append(dict(id=img_id, file_name=file_name, height=height, width=width))
        for fields in nucleus_annotations(label_tile, full_areas):
            coco['annotations'].append(dict(id=len(coco['annotations']) + 1,
                                            image_id=img_id, category_id=CATEGORY_ID, **fields))
    for split, coco in splits.items():
        (out_dir / f'{split}.json').write_text(json.dumps(coco, indent=1))
    (out_dir / LICENCE_FILE).write_text(licence)
    return {split: len(coco['annotations']) for split, coco in splits.items()}
