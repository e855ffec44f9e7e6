"""Albumentations pipelines applied to an image and its mask together.

The steps are the config dicts of :func:`tasks.common.augment.build_transform`; an optional random
crop comes first and pads small images, marking the padding ``ignore_index`` in the mask.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import albumentations as A
import numpy as np

from ..common.augment import build_transform, reseed

__all__ = ['CropSize', 'build_pipeline', 'random_crop', 'apply_pipeline']

CropSize = Union[int, Sequence[int]]


def random_crop(crop_size: CropSize, ignore_index: int) -> A.RandomCrop:
    """A random crop that pads smaller images first, with ``ignore_index`` in the padded mask."""
    height, width = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    return A.RandomCrop(height=height, width=width, pad_if_needed=True, pad_position='random',
                        fill=0.0, fill_mask=ignore_index)


def build_pipeline(steps: Sequence[Dict[str, Any]] = (), crop_size: Optional[CropSize] = None,
                   ignore_index: int = 255) -> Optional[A.Compose]:
    """Compose an optional random crop (first: later steps then work on small arrays) and steps."""
    transforms = [random_crop(crop_size, ignore_index)] if crop_size else []
    transforms += [build_transform(step) for step in steps]
    return A.Compose(transforms) if transforms else None


def apply_pipeline(pipeline: Optional[A.Compose], image: np.ndarray,
                   mask: Optional[np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Run ``pipeline`` on an image and its mask (which may be ``None``)."""
    if pipeline is None:
        return image, mask
    reseed(pipeline)
    if mask is None:
        return pipeline(image=image)['image'], None
    out = pipeline(image=image, mask=mask)
    return out['image'], out['mask']
