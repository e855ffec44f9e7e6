"""Detection configs that follow their data: classes from the COCO files' categories (train and
val must agree), input channels from the images; checked against what a config sets. Registered
as the detection task's data resolver (:mod:`tasks.engine.data`)."""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from ..common.dataset_norm import resolve_dataset_normalization
from ..common.io import DataError
from ..engine.data import datasets_of, follow_the_data
from ..engine.inference_options import fill_slide_window
from .coco import read_coco_json, select_categories
from .metrics import COCO_MAX_DETS

if TYPE_CHECKING:
    from .coco import ImageRecord

__all__ = ['resolve_detection_data', 'image_channels']

DATASET_TYPES = ('effnet_backbones.CocoDetDataset', 'CocoDetDataset')
#: PIL modes and the channels the image reader gives them
_MODE_CHANNELS = {'1': 1, 'L': 1, 'P': 3, 'I': 1, 'I;16': 1, 'I;16B': 1, 'I;16L': 1, 'F': 1,
                  'LA': 1, 'RGB': 3, 'RGBA': 3, 'CMYK': 3, 'YCbCr': 3}


def image_channels(paths: List[Path]) -> Tuple[int, Dict[int, Path]]:
    """Channels of the images (read from their headers), or an error naming two that differ."""
    from PIL import Image

    seen: Dict[int, Path] = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                channels = _MODE_CHANNELS.get(image.mode, len(image.getbands()))
        except (OSError, SyntaxError) as err:
            raise DataError(f'cannot read image {path}: {err}') from None
        seen.setdefault(channels, path)
        if len(seen) > 1:
            (one, first), (other, second) = sorted(seen.items())
            raise DataError(f'images mix channel counts: {first} has {one}, {second} has '
                            f'{other}; convert them to one (gray or RGB)')
    if not seen:
        raise DataError('no image to read the channel count from')
    return next(iter(seen)), seen


def _categories(dataset: ConfigDict) -> Tuple[Tuple[str, ...], Path]:
    path = Path(dataset.data_root).expanduser() / dataset.get('ann_file', 'train.json')
    names, _ = select_categories(read_coco_json(path), None, path)
    return names, path


def resolve_detection_data(cfg: Config, checkpoint_meta: Optional[Mapping[str, Any]] = None
                           ) -> None:
    """Fill ``classes``, ``in_channels``, ``model.num_classes`` and ``model.backbone.in_chans``,
    and a sliced-prediction ``model.test_cfg`` without a window (the training pipeline's
    ``RandomCrop``, :func:`~tasks.engine.inference_options.fill_slide_window`)."""
    fill_slide_window(cfg)
    datasets = datasets_of(cfg, DATASET_TYPES)
    if not datasets:
        return
    meta = dict((checkpoint_meta or {}).get('dataset_meta') or {})
    if meta.get('classes') and meta.get('in_channels'):
        classes, in_channels, source = tuple(meta['classes']), meta['in_channels'], 'the checkpoint'
    else:
        classes, source = _categories(datasets[0][1])
        for key, dataset in datasets[1:]:
            other, path = _categories(dataset)
            if dataset.get('classes') is None and other != classes:
                raise DataError(f'{path} has the categories {list(other)} but {source} has '
                                f'{list(classes)}; train and val must name the same categories')
        first = datasets[0][1]
        data = read_coco_json(Path(first.data_root).expanduser() / first.get('ann_file', 'train.json'))
        folder = Path(first.data_root).expanduser() / first.get('img_dir', 'images')
        files = [folder / image['file_name'] for image in data.get('images', [])]
        in_channels, _ = image_channels([path for path in files if path.is_file()])
        names_by_id = {c['id']: c['name'] for c in data.get('categories', [])}
        boxes = Counter(names_by_id.get(a.get('category_id')) for a in data.get('annotations', []))
        print_log(f'dataset {first.data_root}: classes ({len(classes)}, from {source}): '
                  f'{", ".join(classes)}; channels: {in_channels} (from the images); '
                  f'{len(files)} train images; train boxes per class: '
                  + ', '.join(f'{name} {boxes.get(name, 0)}' for name in classes),
                  logger='current', level=logging.INFO)
    for _, dataset in datasets:
        if dataset.get('classes') is None:
            dataset.classes = classes  # explicit names select categories (checked by the dataset)
        if dataset.get('in_channels') is None:
            dataset.in_channels = in_channels  # an explicit value converts gray <-> RGB
    _resolve_normalization(datasets, meta)
    _resolve_img_scale(datasets, meta)
    reference = datasets[0][1]
    evidence = (f'classes {list(reference.classes)} from {source}, {reference.in_channels} input '
                f'channels')
    follow_the_data(cfg.model, 'num_classes', len(reference.classes), evidence)
    follow_the_data(cfg.model.get('backbone', {}), 'backbone.in_chans', reference.in_channels,
                    evidence)


def _resolve_normalization(datasets: List[Tuple[str, ConfigDict]], meta: Mapping[str, Any]) -> None:
    train = next((d for key, d in datasets if key == 'train_dataloader'), datasets[0][1])

    def training_images():
        root = Path(train.data_root).expanduser()
        data = read_coco_json(root / train.get('ann_file', 'train.json'))
        return [root / train.get('img_dir', 'images') / image['file_name']
                for image in data.get('images', [])]

    resolve_dataset_normalization([d for _, d in datasets], meta, training_images,
                                  train.in_channels)


def _resolve_img_scale(datasets: List[Tuple[str, ConfigDict]], meta: Mapping[str, Any]) -> None:
    """Replace ``img_scale='auto'`` by :func:`auto_img_scale` of the training boxes' median side
    (a checkpoint's own scale wins, so evaluation and inference see what training saw)."""
    wanted = [dataset for _, dataset in datasets if dataset.get('img_scale') == AUTO_SCALE]
    if not wanted:
        return
    if 'img_scale' in meta:
        scale, source = float(meta['img_scale'] or 1.0), 'the checkpoint'
    elif meta.get('classes'):  # a checkpoint from before img_scale: trained at the images' size
        scale, source = 1.0, 'a checkpoint that predates img_scale'
    else:
        import warnings

        from .coco import DataWarning, load_coco
        train = next((d for key, d in datasets if key == 'train_dataloader'), datasets[0][1])
        root = Path(train.data_root).expanduser()
        ann_file = root / train.get('ann_file', 'train.json')
        with warnings.catch_warnings():  # clipped or dropped boxes: the dataset reports them
            warnings.simplefilter('ignore', DataWarning)
            coco = load_coco(ann_file, root / train.get('img_dir', 'images'), train.get('classes'))
        sizes = box_statistics(coco.records)
        median = sizes.side_50 if sizes else float(SMALLEST_ANCHOR)
        scale = auto_img_scale(median)
        source = f'the median box side of {ann_file.name}, {median:.1f} px'
    print_log(f'img_scale (auto, from {source}): {scale:g}', logger='current')
    for dataset in wanted:
        dataset.img_scale = scale


@dataclass(frozen=True)
class BoxStatistics:
    """Object sizes of a split (box side: square root of width x height, pixels) and its densest
    image, which decide the anchors, the input scale and the detections kept per image."""

    side_5: float
    side_50: float
    side_95: float
    most_per_image: int


#: the smallest anchor of the small-object recipes (configs/*_nuclei_demo.py), network pixels
SMALLEST_ANCHOR = 16
#: the object side those recipes are tuned on (the demo nuclei, about 23 px)
TUNED_SIDE = 24
#: the ``img_scale`` value that has the tools choose the scale from the training boxes
AUTO_SCALE = 'auto'
#: the largest scale ``'auto'`` picks (memory grows with its square)
MAX_AUTO_SCALE = 4.0


def auto_img_scale(median_side: float) -> float:
    """The input scale ``img_scale='auto'`` picks for objects of this median side (pixels):
    below the recipes' smallest anchor (16 px) they are enlarged to about the side the recipes
    are tuned on (24 px), to the nearest 0.5 and at most 4x; larger objects keep their size
    (1.0)."""
    if median_side >= SMALLEST_ANCHOR:
        return 1.0
    return min(MAX_AUTO_SCALE, round(2 * TUNED_SIDE / max(median_side, 1.0)) / 2)


def box_statistics(records: Sequence['ImageRecord']) -> Optional[BoxStatistics]:
    """Sizes of the non-crowd boxes of ``records``; None when there are none."""
    import numpy as np
    kept = [record.boxes[~record.crowd] for record in records]
    boxes = np.concatenate(kept or [np.zeros((0, 4), np.float32)])
    if not len(boxes):
        return None
    sides = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
                    * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    side_5, side_50, side_95 = np.percentile(sides, [5, 50, 95]).tolist()
    return BoxStatistics(side_5, side_50, side_95, max(len(b) for b in kept))


def size_notes(splits: Mapping[str, BoxStatistics]) -> List[str]:
    """Advice on the recipe's settings for the objects of ``splits`` (file name -> sizes): the
    input scale from the first one's median side, detections per image from the densest image."""
    notes: List[str] = []
    if not splits:
        return notes
    densest = max(splits, key=lambda name: splits[name].most_per_image)
    most = splits[densest].most_per_image
    if most > COCO_MAX_DETS:
        keep = 100 * math.ceil(1.5 * most / 100)
        notes.append(f'an image of {densest} holds {most} boxes, more than the '
                     f'{COCO_MAX_DETS} detections per image that the recipes keep and COCO AP '
                     f'counts; add --cfg-options model.detections_per_img={keep} '
                     f'val_evaluator.max_dets={keep} test_evaluator.max_dets={keep}')
    source, sizes = next(iter(splits.items()))
    if sizes.side_50 < SMALLEST_ANCHOR:
        factor = auto_img_scale(sizes.side_50)
        notes.append(f'the median box side of {source} is {sizes.side_50:.0f} px, below the '
                     f'{SMALLEST_ANCHOR} px smallest anchors of the small-object recipes (32 px in '
                     f'the COCO ones); enlarge the images about {factor:g}x '
                     f'(img_scale={factor:g} on the train, val and test datasets; the '
                     f"small-object recipes' img_scale='auto' does it) rather than shrinking the "
                     f'anchors (docs/detection.md, "Small and dense objects")')
    return notes


def check_coco_folder(data_root: str, splits: Tuple[str, ...] = ('train', 'val'),
                      img_dir: str = 'images') -> Tuple[str, List[str]]:
    """``(summary, problems)`` of ``DATA_ROOT/<split>.json`` + ``DATA_ROOT/<img_dir>``, for
    ``tools/check_data.py --task det``: every problem, not just the first (boxes the dataset
    would clip or drop count as problems here)."""
    import warnings

    import numpy as np

    from .coco import load_coco
    from .dataset import _check_size, file_size

    root = Path(data_root).expanduser()
    problems: List[str] = []
    split_sizes: Dict[str, BoxStatistics] = {}  # for advice on the recipe, not problems
    lines = [f'dataset {root}']
    first_classes: Optional[Tuple[Tuple[str, ...], Tuple[int, ...], Path]] = None
    files: List[Path] = []
    for split in splits:
        ann_file = root / f'{split}.json'
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                coco = load_coco(ann_file, root / img_dir)
        except DataError as err:
            problems.append(str(err))
            continue
        problems += [str(warning.message) for warning in caught]
        if first_classes is None:
            first_classes = (coco.classes, coco.cat_ids, ann_file)
            lines.append(f'  classes ({len(coco.classes)}, from {ann_file.name}): '
                         + ', '.join(f'{name} (id {cat})' for name, cat in
                                     zip(coco.classes, coco.cat_ids)))
        elif (coco.classes, coco.cat_ids) != first_classes[:2]:
            problems.append(f'{ann_file} has the categories {list(coco.classes)} but '
                            f'{first_classes[2]} has {list(first_classes[0])}; they must agree')
        if not coco.records:
            problems.append(f'{ann_file} lists no images; the split is empty')
        labels = np.concatenate([record.labels[~record.crowd] for record in coco.records]
                                or [np.zeros(0, int)])
        per_class = np.bincount(labels, minlength=len(coco.classes))
        lines.append(f'  {split}: {len(coco.records)} images, {int(per_class.sum())} boxes ('
                     + ', '.join(f'{name} {count}' for name, count in
                                 zip(coco.classes, per_class.tolist())) + ')')
        sizes = box_statistics(coco.records)
        if sizes is not None:
            lines.append(f'    box sides (square root of width x height): 5% {sizes.side_5:.0f} '
                         f'px, median {sizes.side_50:.0f} px, 95% {sizes.side_95:.0f} px; most '
                         f'boxes in one image: {sizes.most_per_image}')
            split_sizes[ann_file.name] = sizes
        for record in coco.records:
            if not record.path.is_file():
                problems.append(f'{ann_file}: image id {record.img_id} names {record.path}, '
                                f'which does not exist')
                continue
            files.append(record.path)
            try:
                _check_size(record, file_size(record.path), ann_file)
            except DataError as err:
                problems.append(str(err))
    try:
        channels, _ = image_channels(files)
        lines.insert(2, f'  channels: {channels} (from the images)')
    except DataError as err:
        problems.append(str(err))
    lines += [f'  note: {text}' for text in size_notes(split_sizes)]
    lines += [f'  problem: {text}' for text in problems]
    return '\n'.join(lines), problems
