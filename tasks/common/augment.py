"""Albumentations transforms from config dicts, shared by every task's pipeline.

A step is ``dict(type='<albumentations transform>', **kwargs)``, e.g. ``[dict(type='HorizontalFlip',
p=0.5), dict(type='OneOf', transforms=[dict(type='ElasticTransform'), dict(type='GridDistortion')],
p=0.3)]``: ``type`` names any albumentations transform; ``transforms`` of a composition (OneOf,
SomeOf, Sequential) nests the same way. Each task composes the steps with what it must move along
(masks, boxes).
"""
from __future__ import annotations

import random
from typing import Any, Dict

import albumentations as A

__all__ = ['build_transform', 'reseed']


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


def reseed(pipeline: A.Compose) -> A.Compose:
    """Give ``pipeline`` a fresh seed drawn from python's ``random``; returns it.

    Python's ``random`` is seeded per DataLoader worker (by torch and by MMEngine); drawing the
    albumentations seed from it keeps workers different and runs reproducible.
    """
    pipeline.set_random_seed(random.getrandbits(31))
    return pipeline
