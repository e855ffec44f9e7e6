"""``SegFolderDataset``: images and class-index masks in ``DATA_ROOT/{split}/{images,masks}``."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import (CropSize, apply_pipeline, build_pipeline, crop_around_foreground,
                      crop_pair)
from ..common.intensity import build_intensity_norm
from ..common.io import DataError, image_size, read_image, to_channels
from .dataset_info import scan_folder
from .io import SamplePaths, check_mask_values, pair_samples, read_mask
from .sample import SegSample

__all__ = ['SegFolderDataset', 'VERIFY_MODES']

VERIFY_MODES = ('full', 'pairs')


class SegFolderDataset(Dataset):
    """Semantic segmentation data in the project's folder layout.

    ``DATA_ROOT/{split}/images/<name>.<png|tif|tiff|jpg>`` pairs with
    ``DATA_ROOT/{split}/masks/<name>.png``, whose pixels hold class indices (0 = background) or
    ``ignore_index``. Images may be gray or colour, 8- or 16-bit (or float TIFF).

    Each item is ``dict(inputs=float tensor (C, H, W), data_samples=SegSample)``.

    Args:
        data_root: the dataset folder.
        split: subfolder, e.g. 'train' or 'val'.
        classes: class names, index order; their number is the number of classes. ``None``:
            from the folder's ``dataset.json`` / ``classes.txt``, else the mask values.
        in_channels: channels the model takes; gray images are repeated, RGB becomes luminance.
            ``None``: the images' own (1 or 3).
        normalize: :class:`~tasks.common.intensity.IntensityNorm` options, e.g.
            ``dict(mode='minmax', percentiles=(1, 99.8))`` or ``dict(mode='window', center=40,
            width=400)``.
        crop_size: random crop (int or (h, w)) before ``pipeline``; smaller images are padded,
            their padding marked ``ignore_index``. ``None`` keeps whole images.
        foreground_ratio: share of training items whose crop is instead placed around a pixel
            of one foreground class of the image, the class drawn uniformly among those present
            (nnU-Net's class-balanced oversampling: small structures reach the batches as often
            as large ones). Needs ``crop_size``; images without foreground get the random crop.
        pipeline: albumentations steps, see :mod:`tasks.common.augment`.
        img_dir: image subfolder name.
        mask_dir: mask subfolder name; ``None`` reads images only (inference).
        ignore_index: mask value excluded from losses and metrics.
        verify: 'full' reads every pair once at start-up and checks sizes and mask values, so bad
            data stops the run before training; 'pairs' only checks that files pair up (large
            datasets), the rest is checked as each file is loaded.
    """

    def __init__(self, data_root: str, split: str = 'train',
                 classes: Optional[Sequence[str]] = None, in_channels: Optional[int] = None,
                 normalize: Optional[Dict[str, Any]] = None, crop_size: Optional[CropSize] = None,
                 foreground_ratio: float = 0.0,
                 pipeline: Sequence[Dict[str, Any]] = (), img_dir: str = 'images',
                 mask_dir: Optional[str] = 'masks', ignore_index: int = 255,
                 verify: str = 'full') -> None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f'data root {root} does not exist; expected a folder holding '
                            f'{split}/{img_dir} and {split}/{mask_dir} (see docs/segmentation.md)')
        if classes is None or in_channels is None:  # built in Python: read them off the data
            info = scan_folder(str(root), (split,), img_dir, mask_dir or 'masks', ignore_index)
            info.raise_problems()
            classes = info.classes if classes is None else classes
            in_channels = info.in_channels if in_channels is None else in_channels
        if len(classes) < 2:
            raise ValueError(f'classes must name at least 2 classes (background first), '
                             f'got {tuple(classes)!r}')
        if not 0 <= ignore_index <= 255 or len(classes) > 255:
            # masks travel through albumentations as uint8
            raise ValueError(f'ignore_index must be in 0..255 and there can be at most 255 '
                             f'classes, got ignore_index={ignore_index}, {len(classes)} classes')
        if not 0.0 <= foreground_ratio <= 1.0:
            raise ValueError(f'foreground_ratio must be in [0, 1], got {foreground_ratio!r}')
        if foreground_ratio and crop_size is None:
            raise ValueError(f'foreground_ratio={foreground_ratio} places crops, but crop_size is '
                             f'None (whole images); set crop_size or foreground_ratio=0')
        if verify not in VERIFY_MODES:
            raise ValueError(f'verify must be one of {VERIFY_MODES}, got {verify!r}')
        self.data_root, self.split = root, split
        self.classes = tuple(classes)
        self.in_channels = in_channels
        self.ignore_index = ignore_index
        self.norm = build_intensity_norm(normalize)
        self.normalize = dict(normalize) if normalize else None
        self.pipeline = build_pipeline(pipeline, crop_size, ignore_index)
        self.crop = crop_pair(crop_size)
        self.foreground_ratio = foreground_ratio
        self.samples: List[SamplePaths] = pair_samples(
            root / split / img_dir, None if mask_dir is None else root / split / mask_dir)
        if verify == 'full':
            for paths in self.samples:
                self._load(paths)

    @property
    def metainfo(self) -> Dict[str, Any]:
        """Class names, input channels and ignore index; MMEngine hands this to the metric as
        ``dataset_meta`` and saves it in checkpoints, so evaluation and inference know them."""
        return dict(classes=self.classes, in_channels=self.in_channels,
                    ignore_index=self.ignore_index, normalize=self.normalize)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, paths: SamplePaths) -> 'tuple[np.ndarray, Optional[np.ndarray]]':
        """Read and check one pair: the image as (H, W, in_channels), the mask as (H, W) uint8."""
        image = to_channels(read_image(paths.image), self.in_channels, paths.image)
        if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
            raise DataError(f'image {paths.image} holds NaN or infinite values; they would make '
                            f'the loss NaN')
        if paths.mask is None:
            return image, None
        mask = read_mask(paths.mask)
        if image_size(image) != image_size(mask):
            raise DataError(f'image {paths.image} is {image_size(image)} (H, W) but its mask '
                            f'{paths.mask} is {image_size(mask)}; they must match')
        check_mask_values(mask, paths.mask, len(self.classes), self.ignore_index)
        return image, mask.astype(np.uint8)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        paths = self.samples[index]
        image, mask = self._load(paths)
        image = self.norm.to_unit(image)  # before any crop: per-image percentiles see it whole
        if (mask is not None and self.foreground_ratio
                and random.random() < self.foreground_ratio):
            image, mask = crop_around_foreground(image, mask, self.crop, self.ignore_index)
        image, mask = apply_pipeline(self.pipeline, image, mask)
        if image.ndim == 2:  # some albumentations steps drop a single channel axis
            image = image[:, :, None]
        image = self.norm.standardize(image)
        gt_mask = None if mask is None else torch.from_numpy(mask.astype(np.int64))
        sample = SegSample(img_path=str(paths.image), img_shape=image_size(image), gt_mask=gt_mask)
        inputs = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return dict(inputs=inputs, data_samples=sample)
