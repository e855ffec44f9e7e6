"""``VolumeSliceDataset``: 2-D slices of volumes (NIfTI, NRRD, MetaImage; nnU-Net / Decathlon
layout) for 2-D models.

Every case of the split is read, checked (:func:`~tasks.segmentation.volumes.load_case`) and
normalised per volume (:mod:`tasks.common.volume_norm`) when the dataset is built, so bad data
stops a run before its first iteration and training reads from memory. Slices are taken along
``slice_axis`` (default: each case's coarsest-spaced axis, as nnU-Net's 2-D configuration does).

For training, each item is a slice; with probability ``foreground_ratio`` it is instead a random
slice holding foreground, cropped around a pixel of one of its foreground classes drawn uniformly
(nnU-Net's class-balanced oversampling, which keeps small structures in the batches). For validation and testing, items are every slice
of every case in order, each sample naming its case and slice so that
:class:`~tasks.segmentation.volume_metrics.VolumeSegMetric` scores whole volumes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..common.io import DataError
from ..common.volume_io import slice_axis as choose_slice_axis
from ..common.volume_norm import VolumeNorm, build_volume_norm
from .augment import (CropSize, apply_pipeline, build_pipeline, crop_around_foreground,
                      crop_pair)
from .sample import SegSample
from .volume_spacing import (TargetSpacing, in_plane_spacing, resampled_size, resize_slices,
                             resolve_target_spacing)
from .volumes import (LoadedCase, VolumeDescription, case_spacings, load_case,
                      read_volume_description, select_cases)

__all__ = ['VolumeSliceDataset', 'SliceStack', 'prepare_case']


@dataclass
class SliceStack:
    """One case ready for slicing: ``image`` ``(S, H, W, C)`` float32 in [0, 1] (S slices along
    ``axis``, at the target in-plane spacing), ``label`` ``(S, H, W)`` uint8 or ``None`` (the
    same grid), the slices holding foreground, the slices' size as stored (``native_size``) and,
    for a resampled case, its label as stored (``native_label``, what it is scored against)."""

    name: str
    axis: int
    image: np.ndarray
    label: Optional[np.ndarray]
    foreground_slices: np.ndarray
    native_size: Tuple[int, int] = (0, 0)
    native_label: Optional[np.ndarray] = None

    @property
    def resampled(self) -> bool:
        """Whether the slices were resized from their stored size."""
        return tuple(self.image.shape[1:3]) != tuple(self.native_size)


def prepare_case(case: LoadedCase, norm: VolumeNorm, axis_rule: Union[str, int],
                 target_spacing: Optional[Sequence[float]] = None) -> SliceStack:
    """Normalise a loaded case, put its slicing axis first (channels last) and resample its
    slices to ``target_spacing`` (row, column; ``None``: as stored)."""
    axis = choose_slice_axis(case.spacing, axis_rule)
    unit = norm.to_unit(case.image)  # (C, X, Y, Z)
    image = np.ascontiguousarray(np.moveaxis(unit, (axis + 1, 0), (0, 3)))
    label = None if case.label is None else np.ascontiguousarray(np.moveaxis(case.label, axis, 0))
    native_size = tuple(image.shape[1:3])
    size = resampled_size(native_size, in_plane_spacing(case.spacing, axis), target_spacing)
    native_label = None
    if size != native_size:
        image = resize_slices(image, size)
        if label is not None:
            native_label, label = label, resize_slices(label, size, labels=True)
    foreground = (np.zeros(0, np.int64) if label is None else
                  np.nonzero(label.reshape(len(label), -1).max(axis=1) > 0)[0])
    return SliceStack(case.name, axis, image, label, foreground, native_size, native_label)


class VolumeSliceDataset(Dataset):
    """Slices of the volumes of an nnU-Net v2 (or Decathlon) raw dataset.

    Each item is ``dict(inputs=float tensor (C, H, W), data_samples=SegSample)``, as
    :class:`~tasks.segmentation.dataset.SegFolderDataset` gives, with ``case`` and
    ``slice_index`` set; any 2-D model of the segmentation task trains on it unchanged.

    Args:
        data_root: the dataset folder (``imagesTr``, ``labelsTr``, ``dataset.json``).
        split: 'train' or 'val' (fold ``fold`` of ``splits_final.json`` or of a seeded
            ``num_folds``-fold split), 'all' (every training case) or 'test' (``imagesTs`` and,
            when present, ``labelsTs``).
        fold: the cross-validation fold.
        num_folds: folds of the seeded split (when the folder has no ``splits_final.json``).
        classes: class names; ``None``: from ``dataset.json`` (a given value must agree).
        in_channels: ``None``: the number of ``channel_names`` (a given value must agree).
        normalize: per-volume normalisation, see :func:`~tasks.common.volume_norm.
            build_volume_norm`: ``dict(mode='auto')`` (CT -> 'ct', else 'zscore'), one dict for
            all channels or a list of one per channel.
        slice_axis: 'coarsest' (per case, the axis of largest spacing) or an array axis 0..2.
        target_spacing: in-plane spacing (row, column) every case's slices are resampled to;
            'median': the median of this dataset's cases (training configs resolve it once from
            the training split, for every split, and the checkpoint keeps it); ``None``: as
            stored. Cases already within 0.1 % of it are used as stored.
        score_native: evaluation items carry the label as stored and ``ori_shape``, so that
            predictions of resampled cases are resized back and scored on the case's own grid;
            default: for the 'val' and 'test' splits.
        foreground_ratio: share of training items drawn from slices holding foreground and
            cropped around it (nnU-Net uses 0.33); 0 for validation.
        crop_size: random crop (int or (h, w)) before ``pipeline``, padding small slices with
            ``ignore_index``; ``None`` keeps whole slices.
        pipeline: albumentations steps (:mod:`tasks.common.augment`).
        ignore_index: label value excluded from losses and metrics (fills crop padding).
        images_dir, labels_dir: folder names; default imagesTr/labelsTr (imagesTs/labelsTs for
            'test'; a test split without labelsTs is read unlabelled). ``labels_dir=''`` reads
            no labels.
    """

    def __init__(self, data_root: str, split: str = 'train', fold: int = 0, num_folds: int = 5,
                 classes: Optional[Sequence[str]] = None, in_channels: Optional[int] = None,
                 normalize: Any = None, slice_axis: Union[str, int] = 'coarsest',
                 foreground_ratio: float = 0.0, crop_size: Optional[CropSize] = None,
                 pipeline: Sequence[Dict[str, Any]] = (), ignore_index: int = 255,
                 images_dir: Optional[str] = None, labels_dir: Optional[str] = None,
                 target_spacing: TargetSpacing = None,
                 score_native: Optional[bool] = None) -> None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f'data root {root} does not exist; expected a volume dataset '
                            f'(imagesTr/, labelsTr/, dataset.json; see docs/segmentation.md)')
        if not 0.0 <= foreground_ratio <= 1.0:
            raise ValueError(f'foreground_ratio must be in [0, 1], got {foreground_ratio}')
        self.description: VolumeDescription = read_volume_description(root)
        self.classes = self._agree('classes', classes, self.description.classes)
        self.in_channels = self._agree('in_channels', in_channels, self.description.in_channels)
        self.data_root, self.split, self.fold = root, split, fold
        self.ignore_index = ignore_index
        self.slice_axis = slice_axis
        self.foreground_ratio = foreground_ratio
        self.crop = crop_pair(crop_size)
        self.norm = build_volume_norm(normalize, self.description.channel_names)
        if self.norm.needs_statistics:
            raise ValueError("normalize mode 'ct' needs the training set's statistics (low, high, "
                             'mean, std): tasks.engine.prepare_train_config measures them, or '
                             'pass them (tasks.common.volume_norm.measure_ct_statistics)')
        self.normalize = self.norm.to_config()
        self.pipeline = build_pipeline(pipeline, crop_size, ignore_index)
        selected = select_cases(self.description, split, fold, num_folds, images_dir,
                                labels_dir)
        if not selected:
            raise DataError(f'split {split!r} (fold {fold}) of {root} holds no case')
        # the median needs only the headers: cases are then read and prepared one at a time
        spacings = case_spacings(selected) if isinstance(target_spacing, str) else []
        self.target_spacing = resolve_target_spacing(target_spacing, spacings, slice_axis)
        self.score_native = split in ('val', 'test') if score_native is None else score_native
        self.cases = [prepare_case(load_case(case, self.description), self.norm, slice_axis,
                                   self.target_spacing) for case in selected]
        for case in self.cases:
            if not self.score_native:
                case.native_label = None  # training scores nothing on the stored grid
            elif case.resampled and (self.crop is not None or pipeline):
                raise ValueError(f'case {case.name!r} is resampled to target_spacing '
                                 f'{self.target_spacing} and scored on its own grid '
                                 f'(score_native), which needs whole slices: remove crop_size '
                                 f'and pipeline from the {split!r} dataset, or set '
                                 f'score_native=False')
        self.index = [(c, s) for c, case in enumerate(self.cases) for s in range(len(case.image))]

    def _agree(self, key: str, given: Any, found: Any) -> Any:
        if given is not None and (tuple(given) if key == 'classes' else given) != found:
            raise DataError(f'{key}={given!r} but {self.description.root / "dataset.json"} gives '
                            f'{found!r}; remove the key to follow the data, or make them agree')
        return found

    @property
    def metainfo(self) -> Dict[str, Any]:
        """Classes, channels, ignore index, the resolved normalisation and slicing rule: MMEngine
        saves it in checkpoints, so evaluation and inference prepare volumes the same way."""
        return dict(classes=self.classes, in_channels=self.in_channels,
                    ignore_index=self.ignore_index, normalize=self.normalize,
                    channel_names=self.description.channel_names, slice_axis=self.slice_axis,
                    target_spacing=self.target_spacing)

    @property
    def case_names(self) -> List[str]:
        """The split's cases, in item order."""
        return [case.name for case in self.cases]

    def __len__(self) -> int:
        return len(self.index)

    def _draw(self, index: int) -> Tuple[SliceStack, int, bool]:
        if self.foreground_ratio and random.random() < self.foreground_ratio:
            with_foreground = [case for case in self.cases if len(case.foreground_slices)]
            if with_foreground:
                case = random.choice(with_foreground)
                return case, int(random.choice(case.foreground_slices)), True
        case_index, slice_index = self.index[index]
        return self.cases[case_index], slice_index, False

    def __getitem__(self, index: int) -> Dict[str, Any]:
        case, slice_index, forced = self._draw(index)
        image = case.image[slice_index]
        mask = None if case.label is None else case.label[slice_index]
        if forced and self.crop is not None:
            image, mask = crop_around_foreground(image, mask, self.crop, self.ignore_index)
        image, mask = apply_pipeline(self.pipeline, image, mask)
        if image.ndim == 2:  # some albumentations steps drop a single channel axis
            image = image[:, :, None]
        image = self.norm.standardize(image)
        ori_shape = None
        if self.score_native and case.resampled:  # scored on the case's own grid
            ori_shape = case.native_size
            mask = None if case.native_label is None else case.native_label[slice_index]
        sample = SegSample(img_path=f'{self.data_root.name}/{case.name}#{slice_index}',
                           img_shape=image.shape[:2],
                           gt_mask=None if mask is None else torch.from_numpy(mask.astype(np.int64)),
                           case=case.name, slice_index=slice_index, ori_shape=ori_shape)
        inputs = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return dict(inputs=inputs, data_samples=sample)
