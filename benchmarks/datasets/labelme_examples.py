"""'labelme-photos': object boxes of the annotated photographs in labelme's examples (COCO).

The labelme sdist ships its tutorial examples with their polygon annotations: three PASCAL VOC
2011 photographs (``examples/instance_segmentation``; person, bottle, chair, sofa, bus, car) and
five consecutive frames of a street video (``examples/video_annotation``; car, track). Each
annotated object (shapes sharing a ``group_id`` are one object) is rasterised on the resized
image and boxed. It is a small set: a real-photo smoke test for detection, not a benchmark.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping

import numpy as np

from .common import (CocoWriter, DataError, PackageArchive, PackageSpec, instance_annotations,
                     resize_to_max_side, write_source)

PACKAGE = 'labelme'
VERSION = '6.3.1'
SPEC = PackageSpec(PACKAGE, VERSION, 'sdist')
_ROOT = f'labelme-{VERSION}/examples/'
#: image stem -> (split, folder under examples/). Validation: one VOC photo and the last video
#: frame; frame 00000103, next to it, is left out so no training frame touches a validation one.
IMAGES = {'2011_000003': ('train', 'instance_segmentation'),
          '2011_000006': ('train', 'instance_segmentation'),
          '2011_000025': ('val', 'instance_segmentation'),
          '00000100': ('train', 'video_annotation'),
          '00000101': ('train', 'video_annotation'),
          '00000102': ('train', 'video_annotation'),
          '00000104': ('val', 'video_annotation')}
MEMBERS = {f'{stem}.{ext}': f'{_ROOT}{folder}/data_annotated/{stem}.{ext}'
           for stem, (_, folder) in IMAGES.items() for ext in ('jpg', 'json')}
LICENCE_MEMBER = f'labelme-{VERSION}/LICENSE'
LICENCE = ('GPL-3.0 (labelme, its examples included); the VOC photographs come from PASCAL VOC '
           '2011 (Flickr images, VOC terms of use)')
CLASSES = ('person', 'bottle', 'chair', 'sofa', 'bus', 'car', 'track')
#: images are shrunk so that their longer side is at most this (never enlarged)
MAX_SIDE = 320
#: labelme's label for regions to leave out
IGNORE_LABEL = '__ignore__'
PROCESSING = f"""
1. Members: `examples/{{instance_segmentation,video_annotation}}/data_annotated/<stem>.{{jpg,json}}`
   (labelme JSON: polygons and rectangles with a label and an optional group_id).
2. Images shrunk (area interpolation) so the longer side is at most {MAX_SIDE} pixels:
   500 x 375 / 338 photos -> 320 x 240 / 216, 1000 x 563 frames -> 320 x 180; saved as PNG.
3. Objects: shapes with the same label and group_id form one object (a shape without group_id
   is its own); polygons and rectangles are rasterised on the shrunk image (later shapes over
   earlier ones) and each object's box is its pixels' bounding box, its area its pixel count;
   objects narrower than 4 pixels get no box (the demo's rule). `{IGNORE_LABEL}` shapes get no box.
4. Classes: {', '.join(CLASSES)}.
5. Split by image: validation is `2011_000025` (VOC) and video frame `00000104`; frame
   `00000103` is dropped so no training frame is the neighbour of the validation one
   (train: 2011_000003, 2011_000006, 00000100-00000102).
"""


def _instances(shapes: List[Mapping[str, Any]], scale: float, size, where: str):
    """An instance label image and instance -> category id for a labelme shape list."""
    import cv2
    instances = np.zeros(size, np.int32)
    objects: Dict[tuple, int] = {}
    category_of: Dict[int, int] = {}
    for number, shape in enumerate(shapes):
        label = shape.get('label')
        if label == IGNORE_LABEL:
            continue
        if label not in CLASSES:
            raise DataError(f'{where}: shape {number} has label {label!r}, not one of {CLASSES}')
        points = np.asarray(shape.get('points', []), np.float64) * scale
        kind = shape.get('shape_type', 'polygon')
        if kind == 'rectangle' and points.shape == (2, 2):
            (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
            points = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
        elif kind != 'polygon' or points.ndim != 2 or len(points) < 3:
            raise DataError(f'{where}: shape {number} ({kind}, {len(points)} points) is neither '
                            f'a polygon nor a rectangle')
        key = (label, shape.get('group_id')) if shape.get('group_id') is not None else number
        instance = objects.setdefault(key, len(objects) + 1)
        category_of[instance] = CLASSES.index(label) + 1
        cv2.fillPoly(instances, [np.round(points).astype(np.int32)], int(instance))
    return instances, category_of


def build(package_file: Path, out_dir: Path) -> Dict[str, int]:
    """Write the COCO layout to ``out_dir``; return images and boxes per split."""
    archive = PackageArchive(package_file, SPEC)
    out_dir = Path(out_dir)
    writer = CocoWriter(out_dir, CLASSES, 'Objects in the labelme example photographs', LICENCE)
    for stem, (split, _) in IMAGES.items():
        annotation = archive.read_json(MEMBERS[f'{stem}.json'])
        image = archive.read_image(MEMBERS[f'{stem}.jpg'])
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        small, scale = resize_to_max_side(image, MAX_SIDE)
        where = f'{package_file}: member {MEMBERS[stem + ".json"]!r}'
        if not isinstance(annotation, dict) or not isinstance(annotation.get('shapes'), list):
            raise DataError(f'{where}: no "shapes" list (not a labelme annotation)')
        instances, category_of = _instances(annotation['shapes'], scale, small.shape[:2], where)
        writer.add(split, stem, small, instance_annotations(instances, category_of))
    counts = writer.write()
    write_source(out_dir, 'labelme-photos: objects in the labelme example photographs', SPEC,
                 list(MEMBERS.values()), LICENCE, archive.read_text(LICENCE_MEMBER), PROCESSING,
                 dict(counts, classes=len(CLASSES), size='240x320, 216x320, 180x320 (HxW)'))
    return counts
