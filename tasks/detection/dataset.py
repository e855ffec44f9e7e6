"""``CocoDetDataset``: COCO instance annotations (``DATA_ROOT/<split>.json``) and their images."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..common.io import DataError, image_size, read_image, shorten_list
from .augment import apply_box_pipeline, build_box_pipeline
from .coco import CocoData, ImageRecord, load_coco, read_coco_json
from .data_config import image_channels
from .geometry import ImageSize
from .preprocess import NetworkInput
from .sample import DetSample

__all__ = ['CocoDetDataset', 'VERIFY_MODES', 'file_size']

VERIFY_MODES = ('full', 'files')


def file_size(path: Path) -> Tuple[int, int]:
    """``(H, W)`` of an image file, from its header where PIL can read it (no decoding)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            width, height = image.size
            return height, width
    except (UnidentifiedImageError, OSError):  # TIFF flavours PIL cannot open: decode fully
        return image_size(read_image(path))


def _check_size(record: ImageRecord, size: Tuple[int, int], ann_file: Path) -> None:
    if size != (record.height, record.width):
        raise DataError(f'image {record.path} is {size[1]} x {size[0]} px (W x H) but {ann_file} '
                        f'records width={record.width}, height={record.height} for image id '
                        f'{record.img_id}; fix the JSON or the file')


class CocoDetDataset(Dataset):
    """Object detection data in COCO instances format.

    ``DATA_ROOT/<ann_file>`` (e.g. ``train.json``) names images in ``DATA_ROOT/<img_dir>``. Every
    image is kept, those without boxes as negatives; crowd boxes (``iscrowd=1``) are left out of
    the training targets and kept for evaluation, where COCOeval ignores detections on them.

    Each item is ``dict(inputs=float tensor (C, H, W), data_samples=DetSample)``.

    Args:
        data_root: the dataset folder.
        ann_file: annotation file, relative to ``data_root``.
        img_dir: image folder, relative to ``data_root``.
        classes: category names to use, in label order; None uses every category (by id).
            Annotations of other categories are left out.
        in_channels: channels the model takes; None: the images' own (gray 1, colour 3).
        normalize: :class:`~tasks.common.intensity.IntensityNorm` options, e.g.
            ``dict(mode='fixed', mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))`` for
            photos or ``dict(mode='minmax', percentiles=(0.5, 99.8))`` for microscopy.
        img_size: network input size (int or (h, w)); None keeps each image's size (the model
            pads batches of different sizes).
        resize: 'letterbox' (keep aspect ratio, pad bottom/right) or 'resize' (stretch).
        img_scale: instead of ``img_size``, resize every image by this factor, keeping its own
            size ratios (objects smaller than the recipe's anchors; ``tools/check_data.py``
            advises one; in configs, ``'auto'`` has the tools choose it from the training
            boxes). Predictions are mapped back to original pixels either way.
        scale_jitter: ``(low, high)`` random rescale, then crop or pad back to ``img_size``.
        pipeline: albumentations steps applied with the boxes (flips, colour ...).
        min_visibility: after a crop, boxes keeping less of their area are dropped from targets.
        verify: 'full' checks at start-up that every image exists and has the size its JSON
            records (reads headers only); 'files' only checks existence (huge datasets); sizes are
            always checked again when an image is loaded.
    """

    def __init__(self, data_root: str, ann_file: str = 'train.json', img_dir: str = 'images',
                 classes: Optional[Sequence[str]] = None, in_channels: Optional[int] = None,
                 normalize: Optional[Dict[str, Any]] = None, img_size: Optional[ImageSize] = None,
                 resize: str = 'letterbox', scale_jitter: Optional[Sequence[float]] = None,
                 pipeline: Sequence[Dict[str, Any]] = (), min_visibility: float = 0.25,
                 verify: str = 'full', img_scale: Optional[float] = None) -> None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f'data root {root} does not exist; expected a folder holding '
                            f'{ann_file} and {img_dir}/ (see docs/detection.md)')
        if verify not in VERIFY_MODES:
            raise ValueError(f'verify must be one of {VERIFY_MODES}, got {verify!r}')
        self.data_root, self.ann_file = root, root / ann_file
        if in_channels is None:  # built in Python: the images' own
            images = read_coco_json(self.ann_file).get('images', [])
            in_channels, _ = image_channels([root / img_dir / image['file_name'] for image in images
                                             if (root / img_dir / image['file_name']).is_file()])
        self.prep = NetworkInput.build(in_channels, normalize, img_size, resize, img_scale)
        self.normalize = dict(normalize) if normalize else None
        self.pipeline = build_box_pipeline(pipeline, scale_jitter, self.prep.img_size,
                                           tuple(self.prep.pad_value.tolist()), min_visibility)
        self.coco: CocoData = load_coco(self.ann_file, root / img_dir, classes)
        if not self.coco.records:
            raise DataError(f'{self.ann_file} lists no images; the split is empty')
        self._check_files(verify == 'full')

    @property
    def records(self) -> List[ImageRecord]:
        """One entry per image, in the JSON's order."""
        return self.coco.records

    @property
    def metainfo(self) -> Dict[str, Any]:
        """Class names, their COCO category ids, the input channels, normalisation and scale;
        MMEngine hands this to the metric and saves it in checkpoints, so evaluation and
        inference know them."""
        return dict(classes=self.coco.classes, cat_ids=self.coco.cat_ids,
                    in_channels=self.prep.in_channels, normalize=self.normalize,
                    img_scale=self.prep.img_scale)

    def _check_files(self, sizes: bool) -> None:
        missing = [record.path for record in self.records if not record.path.is_file()]
        if missing:
            raise DataError(f'{len(missing)} image file(s) named in {self.ann_file} do not exist: '
                            f'{shorten_list(missing)}')
        if sizes:
            for record in self.records:
                _check_size(record, file_size(record.path), self.ann_file)

    def __len__(self) -> int:
        return len(self.records)

    def load_image(self, record: ImageRecord) -> np.ndarray:
        """The image as [0, 1] float ``(H, W, in_channels)``, checked against the JSON's size."""
        raw = read_image(record.path)
        _check_size(record, image_size(raw), self.ann_file)
        return self.prep.to_unit(raw, record.path)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        record = self.records[index]
        image, mapping = self.prep.to_size(self.load_image(record))
        targets = ~record.crowd
        image, boxes, labels = apply_box_pipeline(
            self.pipeline, image, mapping.to_network(record.boxes[targets]), record.labels[targets])
        inputs = self.prep.to_tensor(image)
        sample = DetSample(
            img_path=str(record.path), img_id=record.img_id,
            ori_shape=(record.height, record.width), img_shape=tuple(inputs.shape[-2:]),
            mapping=mapping, gt_boxes=torch.from_numpy(boxes), gt_labels=torch.from_numpy(labels),
            gt_coco=record.coco_annotations(self.coco.cat_ids))
        return dict(inputs=inputs, data_samples=sample)
