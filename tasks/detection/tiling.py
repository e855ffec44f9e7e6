"""Cut a COCO detection set into tiles of one size (SAHI-style slicing), boxes following.

A detector trained on random crops meets whole images at evaluation; where the two differ in
size, so do the maps of its deepest levels (EfficientDet's P7 is 1 x 1 on a 128 px crop and
feeds every level through the BiFPN). Scoring a model on tiles of its training crop size next to
the whole images separates "the weights are worse" from "the weights do not transfer to another
input size" (docs/detection.md, section 9). Tiles also make large images (slides, aerial scenes)
trainable at a fixed size.

Tiles are placed as the sliding windows of the segmentation task
(:func:`tasks.common.windows.window_slices` with no overlap: from the first pixel,
the last one ending on the image's edge, so every tile has the full size unless the image is
smaller). A box goes into each tile that holds at least ``min_visible`` of its area, clipped to
the tile; its COCO ``area`` scales with the clipped share.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

from PIL import Image

from ..common.io import DataError, read_image
from ..common.windows import as_window, fitted_window, window_slices
from .coco import check_coco, read_coco_json

__all__ = ['tile_boxes', 'tile_coco_split', 'tile_coco']

Box = Sequence[float]


def tile_boxes(boxes: Sequence[Box], tile: Tuple[int, int, int, int],
               min_visible: float = 0.5) -> List[Tuple[int, List[float], float]]:
    """``(index, [x, y, w, h] in tile pixels, visible share)`` of the COCO boxes a tile keeps.

    Args:
        boxes: ``[x, y, w, h]`` boxes in image pixels.
        tile: ``(x0, y0, width, height)`` of the tile in image pixels.
        min_visible: the share of a box's area that must lie inside the tile (0 < share <= 1).
    """
    if not 0.0 < min_visible <= 1.0:
        raise ValueError(f'min_visible must be in (0, 1], got {min_visible!r}')
    x0, y0, width, height = tile
    kept = []
    for index, (x, y, w, h) in enumerate(boxes):
        left, top = max(x, x0), max(y, y0)
        right, bottom = min(x + w, x0 + width), min(y + h, y0 + height)
        if right <= left or bottom <= top or w <= 0 or h <= 0:
            continue
        share = (right - left) * (bottom - top) / (w * h)
        if share >= min_visible:
            kept.append((index, [left - x0, top - y0, right - left, bottom - top], share))
    return kept


def tile_coco_split(src: Union[str, Path], out: Union[str, Path], ann_file: str,
                    tile: Union[int, Sequence[int]], min_visible: float = 0.5,
                    img_dir: str = 'images') -> Dict[str, int]:
    """Tile one split (``src/ann_file`` and its images) into ``out`` (same layout); returns the
    counts of images, tiles and boxes written.

    Args:
        src: the COCO set's folder (``ann_file`` and ``img_dir`` inside it).
        out: the folder to write (``out/ann_file``, ``out/img_dir/<name>_x<X>_y<Y>.png``).
        ann_file: the split's annotation file, e.g. ``'val.json'``.
        tile: the tile's side, or ``(height, width)``.
        min_visible: the share of a box's area a tile must hold to keep it (clipped).
        img_dir: the images' folder inside ``src`` and ``out``.
    """
    src, out = Path(src), Path(out)
    tile_hw = as_window(tile, 'tile')
    path = src / ann_file
    data = read_coco_json(path)
    check_coco(data, path)
    (out / img_dir).mkdir(parents=True, exist_ok=True)
    by_image: Dict[int, List[Dict[str, Any]]] = {}
    for ann in data['annotations']:
        by_image.setdefault(ann['image_id'], []).append(ann)
    images, annotations = [], []
    for image in data['images']:
        file = src / img_dir / image['file_name']
        if not file.is_file():
            raise DataError(f'{path}: image id {image["id"]} names {image["file_name"]!r}, '
                            f'which is not in {src / img_dir}')
        pixels = read_image(file)
        height, width = pixels.shape[:2]
        if (height, width) != (image['height'], image['width']):
            raise DataError(f'{file} is {width} x {height} px but {path} says '
                            f'{image["width"]} x {image["height"]} (image id {image["id"]})')
        anns = by_image.get(image['id'], [])
        tile_h, tile_w = fitted_window((height, width), tile_hw)
        for rows, columns in window_slices((height, width), (tile_h, tile_w), 0.0):
            x0, y0 = columns.start, rows.start
            name = f'{Path(image["file_name"]).stem}_x{x0}_y{y0}.png'
            piece = pixels[rows, columns]
            Image.fromarray(piece[:, :, 0] if piece.shape[2] == 1 else piece).save(
                out / img_dir / name)
            tile_id = len(images) + 1
            images.append(dict(id=tile_id, file_name=name, width=tile_w, height=tile_h,
                               source_image_id=image['id'], source_offset=[x0, y0]))
            for index, bbox, share in tile_boxes([a['bbox'] for a in anns],
                                                 (x0, y0, tile_w, tile_h), min_visible):
                ann = anns[index]
                area = ann.get('area', ann['bbox'][2] * ann['bbox'][3]) * share
                annotations.append(dict(id=len(annotations) + 1, image_id=tile_id,
                                        category_id=ann['category_id'], bbox=bbox, area=area,
                                        iscrowd=ann.get('iscrowd', 0)))
    tiled = dict(images=images, annotations=annotations, categories=data['categories'])
    (out / ann_file).write_text(json.dumps(tiled), encoding='utf-8')
    return dict(images=len(data['images']), tiles=len(images), boxes=len(annotations))


def tile_coco(src: Union[str, Path], out: Union[str, Path], tile: Union[int, Sequence[int]],
              splits: Sequence[str] = ('train.json', 'val.json'), min_visible: float = 0.5
              ) -> Dict[str, Dict[str, int]]:
    """Tile every split of a COCO set in the layout of DESIGN.md (``train.json``, ``val.json``,
    ``images/``) into ``out``; returns the counts per split. Splits without a file are skipped.

    Args:
        src: the COCO set's folder.
        out: the folder to write; must not be ``src``.
        tile: the tile's side, or ``(height, width)``.
        splits: the annotation files to tile.
        min_visible: the share of a box's area a tile must hold to keep it (clipped).
    """
    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise ValueError(f'--out {out} is the source set; tiles go to another folder')
    present = [split for split in splits if (src / split).is_file()]
    if not present:
        raise DataError(f'{src} holds none of {list(splits)}; expected a COCO set with '
                        f'train.json / val.json and images/')
    return {split: tile_coco_split(src, out, split, tile, min_visible) for split in present}
