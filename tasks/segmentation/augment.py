"""Albumentations pipelines applied to an image and its mask together.

The steps are the config dicts of :func:`tasks.common.augment.build_transform`; an optional random
crop comes first and pads small images, marking the padding ``ignore_index`` in the mask.
"""
from __future__ import annotations

import random
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import albumentations as A
import numpy as np

from ..common.augment import build_transform, reseed

__all__ = ['CropSize', 'build_pipeline', 'random_crop', 'apply_pipeline', 'crop_pair',
           'crop_around_foreground']

CropSize = Union[int, Sequence[int]]


def random_crop(crop_size: CropSize, ignore_index: int) -> A.RandomCrop:
    """A random crop that pads smaller images first, with ``ignore_index`` in the padded mask."""
    height, width = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    return A.RandomCrop(height=height, width=width, pad_if_needed=True, pad_position='random',
                        fill=0.0, fill_mask=ignore_index)


def crop_pair(crop_size: Optional[CropSize]) -> Optional[Tuple[int, int]]:
    """``crop_size`` as ``(height, width)`` (``None`` stays ``None``)."""
    if crop_size is None:
        return None
    return (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)


def crop_around_foreground(image: np.ndarray, mask: np.ndarray, crop: Tuple[int, int],
                           ignore_index: int = 255) -> Tuple[np.ndarray, np.ndarray]:
    """A ``crop``-sized window holding a foreground pixel at a random place in it.

    The class is drawn first, uniformly among the foreground classes present in ``mask``, then a
    pixel of that class (nnU-Net's class-balanced oversampling): a structure of 20 pixels is as
    likely to be in the window as one of 2,000. Sides not larger than the window stay whole (the
    pipeline's random crop pads them). A mask without foreground is returned unchanged.
    """
    present = np.unique(mask)
    present = present[(present > 0) & (present != ignore_index)]
    if not len(present):
        return image, mask
    rows, cols = np.nonzero(mask == random.choice(present.tolist()))
    pick = random.randrange(len(rows))
    starts = []
    for centre, side, window in ((rows[pick], mask.shape[0], crop[0]),
                                 (cols[pick], mask.shape[1], crop[1])):
        if side <= window:
            starts.append(0)
            continue
        start = centre - random.randrange(window)
        starts.append(int(min(max(start, 0), side - window)))
    (top, left), (height, width) = starts, crop
    return (image[top:top + height, left:left + width],
            mask[top:top + height, left:left + width])


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
