"""One in-plane voxel spacing for every slice: cases whose pixels are larger or smaller than the
target are resampled in the slice plane, as nnU-Net's 2-D configuration resamples every case to
the training set's median spacing; predictions go back to each case's own grid before they are
scored or written.

Only the two in-plane axes change (the slicing axis keeps its slices), so going back is a 2-D
resize of each slice's logits. Images are resampled bilinearly (area-weighted when shrinking);
labels as nnU-Net resamples segmentations, each class's mask bilinearly and then the class of
largest weight per pixel (nearest neighbour would move every structure by half a source pixel
when shrinking by an even factor); logits bilinearly before the argmax.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..common.volume_io import slice_axis as choose_slice_axis

__all__ = ['TARGET_SPACING_RULES', 'TargetSpacing', 'in_plane_spacing', 'median_in_plane_spacing',
           'resolve_target_spacing', 'differs_from_target', 'cases_off_target', 'resampled_size',
           'resize_slices', 'resize_logits']

#: ``target_spacing='median'``: the median in-plane spacing of the training cases
TARGET_SPACING_RULES = ('median',)
TargetSpacing = Union[None, str, Sequence[float]]
#: spacings this close (relative) count as equal: such a case is used as stored
RELATIVE_TOLERANCE = 1e-3
#: slices resized at once (bounds the float32 copy of a large volume)
_CHUNK = 64


def in_plane_spacing(spacing: Sequence[float], axis: int) -> Tuple[float, float]:
    """The spacing along a slice's rows and columns: the two axes other than ``axis``, in array
    order (a slice of an ``(X, Y, Z)`` volume along z is ``(X, Y)``)."""
    return tuple(float(spacing[a]) for a in range(3) if a != axis)  # type: ignore[return-value]


def median_in_plane_spacing(spacings: Sequence[Sequence[float]],
                            axis_rule: Union[str, int] = 'coarsest') -> Tuple[float, float]:
    """The median of the cases' in-plane spacings, row and column separately."""
    if not spacings:
        raise ValueError('no case to take the median in-plane spacing of')
    planes = np.array([in_plane_spacing(s, choose_slice_axis(s, axis_rule)) for s in spacings])
    return tuple(float(v) for v in np.median(planes, axis=0))  # type: ignore[return-value]


def cases_off_target(spacings: Sequence[Sequence[float]], target: Optional[Sequence[float]],
                     axis_rule: Union[str, int] = 'coarsest') -> int:
    """How many of the cases (their 3-D spacings) are resampled to ``target``."""
    return sum(differs_from_target(in_plane_spacing(s, choose_slice_axis(s, axis_rule)), target)
               for s in spacings)


def resolve_target_spacing(target: TargetSpacing, spacings: Sequence[Sequence[float]],
                           axis_rule: Union[str, int] = 'coarsest'
                           ) -> Optional[Tuple[float, float]]:
    """``None`` (every case as stored), ``'median'`` (of ``spacings``) or a ``(row, column)``
    pair, checked."""
    if target is None:
        return None
    if isinstance(target, str):
        if target not in TARGET_SPACING_RULES:
            raise ValueError(f'target_spacing must be None, one of {TARGET_SPACING_RULES} or a '
                             f'(row, column) spacing, got {target!r}')
        return median_in_plane_spacing(spacings, axis_rule)
    pair = tuple(float(v) for v in target)
    if len(pair) != 2 or not all(np.isfinite(v) and v > 0 for v in pair):
        raise ValueError(f'target_spacing must be two positive spacings (row, column), got '
                         f'{target!r}')
    return pair  # type: ignore[return-value]


def differs_from_target(spacing: Sequence[float], target: Optional[Sequence[float]]) -> bool:
    """Whether an in-plane spacing is to be resampled to ``target``: it differs from it by more
    than :data:`RELATIVE_TOLERANCE` (never without a target)."""
    return target is not None and not np.allclose(spacing, target, rtol=RELATIVE_TOLERANCE,
                                                  atol=0)


def resampled_size(size: Sequence[int], spacing: Sequence[float],
                   target: Optional[Sequence[float]]) -> Tuple[int, int]:
    """The slice size at ``target`` spacing (the same extent), or ``size`` itself when the
    spacings agree within :data:`RELATIVE_TOLERANCE` (or there is no target)."""
    size = (int(size[0]), int(size[1]))
    if not differs_from_target(spacing, target):
        return size
    return tuple(max(1, int(round(n * s / t)))  # type: ignore[return-value]
                 for n, s, t in zip(size, spacing, target))


def resize_slices(stack: np.ndarray, size: Sequence[int], labels: bool = False) -> np.ndarray:
    """``(S, H, W)`` or ``(S, H, W, C)`` slices resized to ``size``: images bilinearly to float32
    (area-weighted where they shrink), labels (``(S, H, W)`` class indices, dtype kept) class by
    class, each pixel taking the class whose resized mask weighs most."""
    size = (int(size[0]), int(size[1]))
    if tuple(stack.shape[1:3]) == size:
        return stack
    out = np.empty((len(stack), *size, *stack.shape[3:]),
                   stack.dtype if labels else np.float32)
    for first in range(0, len(stack), _CHUNK):
        chunk = stack[first:first + _CHUNK]
        if labels:
            out[first:first + _CHUNK] = _resize_labels(chunk, size)
            continue
        planes = torch.from_numpy(np.ascontiguousarray(chunk))
        planes = planes[:, None] if planes.ndim == 3 else planes.permute(0, 3, 1, 2)
        resized = _bilinear(planes.float(), size)
        resized = resized[:, 0] if stack.ndim == 3 else resized.permute(0, 2, 3, 1)
        out[first:first + _CHUNK] = resized.numpy()
    return out


def _bilinear(planes: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    shrinking = size[0] < planes.shape[-2] or size[1] < planes.shape[-1]
    return F.interpolate(planes, size=size, mode='bilinear', align_corners=False,
                         antialias=shrinking)


def _resize_labels(labels: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    best = chosen = None
    for value in np.unique(labels):
        weight = _bilinear(torch.from_numpy(labels == value)[:, None].float(), size)[:, 0]
        if best is None:
            best, chosen = weight, torch.full(weight.shape, int(value), dtype=torch.int64)
        else:
            heavier = weight > best
            chosen[heavier], best = int(value), torch.maximum(best, weight)
    return chosen.numpy().astype(labels.dtype)


def resize_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(N, K, H, W)`` logits resized bilinearly to ``size`` (unchanged when it is theirs)."""
    size = (int(size[0]), int(size[1]))
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode='bilinear', align_corners=False)
