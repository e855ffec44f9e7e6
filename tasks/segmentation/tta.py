"""Test-time augmentation: the prediction averaged over flipped (and rotated) views of the input.

As nnU-Net's mirroring: every combination of the listed flip axes is predicted (for 'h' and 'v':
the identity, h, v and hv), each prediction is flipped back, and the logits are averaged (nnU-Net
v2 averages logits, not probabilities). Rotations by 90, 180 and 270 degrees are added only on
request: they suit data without a preferred orientation (microscopy, not chest X-rays).
"""
from __future__ import annotations

import itertools
from typing import Callable, Dict, List, Sequence, Tuple

import torch

__all__ = ['TTA_FLIPS', 'check_flips', 'tta_views', 'tta_logits']

#: Flip names and the tensor dimension each mirrors: 'h' left-right, 'v' top-bottom.
TTA_FLIPS: Dict[str, int] = {'h': -1, 'v': -2}

Transform = Callable[[torch.Tensor], torch.Tensor]
PredictFn = Callable[[torch.Tensor], torch.Tensor]


def check_flips(flips: Sequence[str], name: str = 'flips') -> Tuple[str, ...]:
    """The flip names, duplicates dropped, or a ValueError naming any that is not in TTA_FLIPS.

    Args:
        flips: flip names, e.g. ``('h', 'v')``; empty for none.
        name: what the error message calls the value (e.g. ``'model.test_cfg.tta.flips'``).
    """
    if isinstance(flips, str) or not isinstance(flips, Sequence):
        raise ValueError(f'{name} must be a list of flip names out of {sorted(TTA_FLIPS)}, '
                         f'got {flips!r}')
    unknown = [flip for flip in flips if flip not in TTA_FLIPS]
    if unknown:
        raise ValueError(f'{name}: unknown flip {unknown[0]!r}; valid flips are '
                         f"{sorted(TTA_FLIPS)} ('h' left-right, 'v' top-bottom)")
    return tuple(dict.fromkeys(flips))


def _flip(dims: Tuple[int, ...]) -> Transform:
    return lambda tensor: torch.flip(tensor, dims)


def _rotate(turns: int) -> Transform:
    return lambda tensor: torch.rot90(tensor, turns, dims=(-2, -1))


def tta_views(flips: Sequence[str] = ('h', 'v'),
              rot90: bool = False) -> List[Tuple[Transform, Transform]]:
    """``(transform, inverse)`` per view: the identity, every combination of ``flips``, and with
    ``rot90`` the rotations by 90, 180 and 270 degrees of the unflipped input.

    Args:
        flips: flip names out of :data:`TTA_FLIPS`.
        rot90: add the three rotations (only for data that looks the same turned).
    """
    flips = check_flips(flips)
    views = []
    for count in range(len(flips) + 1):
        for combination in itertools.combinations(flips, count):
            flip = _flip(tuple(TTA_FLIPS[name] for name in combination))
            views.append((flip, flip))  # a flip is its own inverse (also an empty one)
    if rot90:
        views += [(_rotate(turns), _rotate(-turns)) for turns in (1, 2, 3)]
    return views


def tta_logits(predict_fn: PredictFn, inputs: torch.Tensor, flips: Sequence[str] = ('h', 'v'),
               rot90: bool = False) -> torch.Tensor:
    """Logits ``(N, K, H, W)`` averaged over the views of :func:`tta_views`, each mapped back.

    Args:
        predict_fn: ``(N, C, H, W)`` -> logits ``(N, K, H, W)``; with ``rot90`` it also gets the
            rotated ``(N, C, W, H)``.
        inputs: the images ``(N, C, H, W)``.
        flips: flip names out of :data:`TTA_FLIPS`; all their combinations are predicted.
        rot90: also average the 90, 180 and 270 degree rotations of the input.
    """
    views = tta_views(flips, rot90)
    total = None
    for transform, inverse in views:
        logits = inverse(predict_fn(transform(inputs)))
        # a running sum keeps one prediction in memory, not one per view
        total = logits.clone() if total is None else total.add_(logits)
    return total / len(views)
