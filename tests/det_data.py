"""Tiny synthetic COCO-format detection sets for the tests: bright rectangles on noise."""
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np

CATEGORIES = [dict(id=3, name='box'), dict(id=7, name='bar')]  # non-contiguous on purpose


def draw(size: Tuple[int, int], boxes: Sequence[Sequence[float]], seed: int) -> np.ndarray:
    """An 8-bit RGB image of ``size`` with a filled rectangle per ``[x, y, w, h]`` box."""
    rng = np.random.default_rng(seed)
    image = rng.normal(30, 8, (*size, 3))
    for x, y, w, h in boxes:
        image[int(y):int(y + h), int(x):int(x + w)] = 200
    return np.clip(image, 0, 255).astype(np.uint8)


def image_entry(img_id: int, size: Tuple[int, int]) -> Dict[str, Any]:
    return dict(id=img_id, file_name=f'img{img_id}.png', height=size[0], width=size[1])


def write_coco(root: Path, name: str, images: List[Dict[str, Any]],
               annotations: List[Dict[str, Any]], draw_boxes: bool = True,
               categories=CATEGORIES) -> Path:
    """Write ``root/<name>`` and the images it names (boxes drawn from the annotations)."""
    (root / 'images').mkdir(parents=True, exist_ok=True)
    for image in images:
        boxes = [ann['bbox'] for ann in annotations if ann['image_id'] == image['id']]
        pixels = draw((image['height'], image['width']), boxes if draw_boxes else [], image['id'])
        cv2.imwrite(str(root / 'images' / image['file_name']), pixels)
    path = root / name
    path.write_text(json.dumps(dict(images=images, annotations=annotations,
                                    categories=categories)))
    return path


def ann(ann_id: int, img_id: int, bbox: Sequence[float], cat: int = 3, **extra) -> Dict[str, Any]:
    fields = dict(id=ann_id, image_id=img_id, category_id=cat, bbox=list(bbox), iscrowd=0,
                  area=float(bbox[2] * bbox[3]))
    return {**fields, **extra}


def make_dataset(root: Path) -> Path:
    """train.json and val.json: two classes, a negative image, images of different sizes."""
    train_images = [image_entry(1, (64, 80)), image_entry(2, (72, 64)), image_entry(3, (64, 64))]
    train_anns = [ann(1, 1, (8, 8, 20, 16)), ann(2, 1, (40, 30, 24, 20), cat=7),
                  ann(3, 2, (10, 20, 30, 30)), ann(4, 2, (44, 6, 12, 40), cat=7)]
    write_coco(root, 'train.json', train_images, train_anns)  # image 3: a negative
    val_images = [image_entry(11, (50, 70)), image_entry(12, (64, 64))]
    val_anns = [ann(11, 11, (5, 5, 20, 20)), ann(12, 11, (35, 20, 25, 18), cat=7),
                ann(13, 12, (20, 16, 24, 24))]
    write_coco(root, 'val.json', val_images, val_anns)
    return root
