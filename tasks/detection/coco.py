"""Reading COCO instance annotations with pycocotools: checked, cleaned, one record per image.

Bad input is handled in one of two ways, always naming the file and the annotation or key:

- repaired with a :class:`DataWarning` that counts the cases: boxes partly outside their image are
  clipped; boxes with zero or negative width or height, and boxes entirely outside their image,
  are dropped;
- stopped with :class:`~tasks.common.io.DataError`: malformed JSON, missing or mistyped keys,
  duplicate ids, unknown category or image ids, classes the file does not define.

Category ids map to contiguous labels ``0..K-1`` in the order of ``classes`` (default: every
category, by id); :attr:`CocoData.cat_ids` maps them back.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..common.io import DataError, shorten_list

__all__ = ['DataWarning', 'ImageRecord', 'CocoData', 'CleaningReport', 'read_coco_json',
           'check_coco', 'select_categories', 'load_coco', 'coco_index']

LAYOUT = 'DATA_ROOT/train.json, DATA_ROOT/val.json and DATA_ROOT/images/ (see docs/detection.md)'


class DataWarning(UserWarning):
    """Annotations were repaired or dropped while loading (the message counts them)."""


@dataclass(frozen=True)
class ImageRecord:
    """One image and its cleaned annotations, boxes as ``x1, y1, x2, y2`` in its own pixels."""

    img_id: int
    path: Path
    height: int
    width: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    crowd: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    ann_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    areas: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float64))

    def coco_annotations(self, cat_ids: Sequence[int]) -> List[Dict[str, Any]]:
        """The annotations as COCO dicts (``bbox`` as x, y, w, h), for evaluation."""
        return [dict(id=int(ann_id), image_id=self.img_id, category_id=int(cat_ids[label]),
                     bbox=[float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                     area=float(area), iscrowd=int(crowd))
                for (x1, y1, x2, y2), label, crowd, ann_id, area
                in zip(self.boxes, self.labels, self.crowd, self.ann_ids, self.areas)]


@dataclass(frozen=True)
class CocoData:
    """A loaded split: one record per image (negatives included) and the class mapping."""

    records: List[ImageRecord]
    classes: Tuple[str, ...]
    cat_ids: Tuple[int, ...]


@dataclass
class CleaningReport:
    """Annotation ids repaired or dropped while cleaning boxes."""

    clipped: List[int] = field(default_factory=list)
    degenerate: List[int] = field(default_factory=list)
    outside: List[int] = field(default_factory=list)

    def message(self, ann_file: Path) -> Optional[str]:
        """One line per kind of problem, or None when there was none."""
        parts = []
        if self.clipped:
            parts.append(f'clipped {len(self.clipped)} box(es) partly outside their image '
                         f'(annotation ids {shorten_list(self.clipped)})')
        if self.degenerate:
            parts.append(f'dropped {len(self.degenerate)} box(es) with zero or negative width or '
                         f'height (annotation ids {shorten_list(self.degenerate)})')
        if self.outside:
            parts.append(f'dropped {len(self.outside)} box(es) entirely outside their image '
                         f'(annotation ids {shorten_list(self.outside)})')
        return f'{ann_file}: ' + '; '.join(parts) if parts else None


def read_coco_json(path: Path) -> Dict[str, Any]:
    """The parsed JSON file, or DataError naming the file and where parsing failed."""
    if not path.is_file():
        raise DataError(f'annotation file {path} not found; expected {LAYOUT}')
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except json.JSONDecodeError as err:
        raise DataError(f'{path} is not valid JSON: {err.msg} at line {err.lineno}, '
                        f'column {err.colno}') from None
    except UnicodeDecodeError as err:
        raise DataError(f'{path} is not UTF-8 text: {err}') from None
    if not isinstance(data, dict):
        raise DataError(f'{path}: the top level must be a JSON object with "images", '
                        f'"annotations" and "categories", got a {type(data).__name__}')
    return data


def _get(record: Any, key: str, kind: Any, where: str, path: Path) -> Any:
    """``record[key]``, checked to be of ``kind``, or DataError naming the file, record and key."""
    if not isinstance(record, dict):
        raise DataError(f'{path}: {where} must be a JSON object, got {record!r:.80}')
    if key not in record:
        raise DataError(f'{path}: {where} has no {key!r} key')
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f'{path}: {where} has {key}={value!r:.80}; expected {_kind_name(kind)}')
    return value


def _kind_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return ' or '.join({int: 'an integer', str: 'a string', list: 'a list', float: 'a number'}
                       .get(k, k.__name__) for k in kinds)


def _unique_ids(records: List[Any], what: str, path: Path) -> Dict[int, Any]:
    by_id: Dict[int, Any] = {}
    for index, record in enumerate(records):
        record_id = _get(record, 'id', int, f'{what}[{index}]', path)
        if record_id in by_id:
            raise DataError(f'{path}: {what} id {record_id} appears more than once')
        by_id[record_id] = record
    return by_id


def check_coco(data: Dict[str, Any], path: Path) -> None:
    """Check the structure pycocotools and the dataset rely on; DataError names what is wrong."""
    for key in ('images', 'annotations', 'categories'):
        if key not in data:
            hint = ' (use [] for a split without boxes)' if key == 'annotations' else ''
            raise DataError(f'{path} has no {key!r} key{hint}; expected COCO instances format')
        if not isinstance(data[key], list):
            raise DataError(f'{path}: {key!r} must be a list, got {type(data[key]).__name__}')
    images = _unique_ids(data['images'], 'images', path)
    for image_id, image in images.items():
        where = f'image id {image_id}'
        _get(image, 'file_name', str, where, path)
        for key in ('width', 'height'):
            if _get(image, key, int, where, path) < 1:
                raise DataError(f'{path}: {where} has {key}={image[key]}; expected a positive size')
    categories = _unique_ids(data['categories'], 'categories', path)
    for cat_id, category in categories.items():
        _get(category, 'name', str, f'category id {cat_id}', path)
    _unique_ids(data['annotations'], 'annotations', path)
    for ann in data['annotations']:
        where = f'annotation id {ann["id"]}'
        if _get(ann, 'image_id', int, where, path) not in images:
            raise DataError(f'{path}: {where} refers to image_id {ann["image_id"]}, which is not '
                            f'in "images"')
        if _get(ann, 'category_id', int, where, path) not in categories:
            raise DataError(f'{path}: {where} has unknown category_id {ann["category_id"]}; '
                            f'"categories" defines ids {sorted(categories)}')
        bbox = _get(ann, 'bbox', list, where, path)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                     and math.isfinite(v) for v in bbox):
            raise DataError(f'{path}: {where} has bbox={bbox!r:.80}; expected [x, y, width, '
                            f'height], four finite numbers')
        if 'iscrowd' in ann and ann['iscrowd'] not in (0, 1):
            raise DataError(f'{path}: {where} has iscrowd={ann["iscrowd"]!r}; expected 0 or 1')


def select_categories(data: Dict[str, Any], classes: Optional[Sequence[str]],
                      path: Path) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    """``(names, category ids)`` of the classes, in label order (default: all, by id)."""
    categories = sorted(data['categories'], key=lambda category: category['id'])
    if classes is None:
        if not categories:
            raise DataError(f'{path}: "categories" is empty; a detector needs at least one class')
        return tuple(c['name'] for c in categories), tuple(c['id'] for c in categories)
    by_name: Dict[str, int] = {}
    for category in categories:
        by_name.setdefault(category['name'], category['id'])
    unknown = [name for name in classes if name not in by_name]
    if unknown:
        raise DataError(f'{path}: classes {unknown} are not among its categories '
                        f'{sorted(by_name)}')
    if not classes:
        raise ValueError('classes is empty; name at least one category, or None for all')
    return tuple(classes), tuple(by_name[name] for name in classes)


def coco_index(data: Dict[str, Any]) -> Any:
    """A pycocotools ``COCO`` object over already-parsed data (without its progress prints)."""
    from pycocotools.coco import COCO
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _clean_boxes(anns: List[Dict[str, Any]], width: int, height: int,
                 report: CleaningReport) -> Tuple[List[Dict[str, Any]], np.ndarray]:
    """Keep annotations with a positive-size box overlapping the image; clip those kept."""
    kept, boxes = [], []
    for ann in anns:
        x, y, w, h = ann['bbox']
        if w <= 0 or h <= 0:
            report.degenerate.append(ann['id'])
            continue
        x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        if x2 <= x1 or y2 <= y1:
            report.outside.append(ann['id'])
            continue
        if (x1, y1, x2, y2) != (x, y, x + w, y + h):
            report.clipped.append(ann['id'])
        kept.append(ann)
        boxes.append((x1, y1, x2, y2))
    return kept, np.asarray(boxes, np.float32).reshape(-1, 4)


def _record(image: Dict[str, Any], anns: List[Dict[str, Any]], img_dir: Path,
            label_of: Dict[int, int], report: CleaningReport) -> ImageRecord:
    anns = [ann for ann in anns if ann['category_id'] in label_of]  # others: not selected
    kept, boxes = _clean_boxes(anns, image['width'], image['height'], report)
    # COCO's area is the object's (mask) area; without one, the clipped box area stands in
    areas = [ann['area'] if isinstance(ann.get('area'), (int, float)) and ann['area'] > 0
             else float((x2 - x1) * (y2 - y1)) for ann, (x1, y1, x2, y2) in zip(kept, boxes)]
    return ImageRecord(
        img_id=image['id'], path=img_dir / image['file_name'], height=image['height'],
        width=image['width'], boxes=boxes,
        labels=np.asarray([label_of[ann['category_id']] for ann in kept], np.int64),
        crowd=np.asarray([bool(ann.get('iscrowd', 0)) for ann in kept], bool),
        ann_ids=np.asarray([ann['id'] for ann in kept], np.int64),
        areas=np.asarray(areas, np.float64))


def load_coco(ann_file: Path, img_dir: Path, classes: Optional[Sequence[str]] = None) -> CocoData:
    """Read, check and clean a COCO instances file; one record per image, negatives included.

    Warns (:class:`DataWarning`) once with the counts of clipped and dropped boxes.
    """
    data = read_coco_json(ann_file)
    check_coco(data, ann_file)
    names, cat_ids = select_categories(data, classes, ann_file)
    label_of = {cat_id: label for label, cat_id in enumerate(cat_ids)}
    coco = coco_index(data)
    report = CleaningReport()
    records = [_record(image, coco.imgToAnns.get(image['id'], []), img_dir, label_of, report)
               for image in data['images']]
    message = report.message(ann_file)
    if message:
        warnings.warn(message, DataWarning, stacklevel=2)
    return CocoData(records=records, classes=names, cat_ids=cat_ids)
