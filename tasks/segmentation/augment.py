"""Albumentations pipelines from config dicts, applied to image and mask together.

A pipeline is a list such as ``[dict(type='HorizontalFlip', p=0.5), dict(type='OneOf',
transforms=[dict(type='ElasticTransform'), dict(type='GridDistortion')], p=0.3)]``: ``type``
names any albumentations transform; ``transforms`` of a composition (OneOf, SomeOf, Sequential)
nests the same way.
"""
from __future__ import annotations

import random
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import albumentations as A
import numpy as np

__all__ = ['build_transform', 'build_pipeline', 'random_crop', 'apply_pipeline']

CropSize = Union[int, Sequence[int]]


def build_transform(cfg: Dict[str, Any]) -> A.BasicTransform:
    """One albumentations transform from ``dict(type='Name', **kwargs)``."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f"a pipeline step must be dict(type='<albumentations transform>', ...), "
                        f'got {cfg!r}')
    kwargs = dict(cfg)
    name = kwargs.pop('type')
    cls = getattr(A, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, (A.BasicTransform, A.BaseCompose))):
        raise ValueError(f'pipeline step type {name!r} is not an albumentations transform '
                         f'(e.g. HorizontalFlip, Affine, RandomBrightnessContrast, OneOf)')
    if 'transforms' in kwargs:
        kwargs['transforms'] = [build_transform(child) for child in kwargs['transforms']]
    try:
        return cls(**kwargs)
    except Exception as err:  # albumentations validates with pydantic: say which step failed
        raise ValueError(f'pipeline step {cfg!r}: {err}') from err


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
    # python's `random` is seeded per DataLoader worker (by torch and by MMEngine); drawing the
    # albumentations seed from it keeps workers different and runs reproducible
    pipeline.set_random_seed(random.getrandbits(31))
    if mask is None:
        return pipeline(image=image)['image'], None
    out = pipeline(image=image, mask=mask)
    return out['image'], out['mask']
