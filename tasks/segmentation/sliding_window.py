"""Sliding-window prediction with Gaussian importance weighting (nnU-Net's, MONAI's inferers).

A model trained on crops sees a whole large image only in pieces: windows of the crop size are
predicted one batch at a time (memory is bounded by the windows per call, not the image), and
where windows overlap their logits are averaged with a Gaussian weight, so the pixels a window saw
with little context (its border) count less than those it saw in its centre.

2D only: volumes are predicted slice by slice with the same functions.
"""
from __future__ import annotations

import numbers
from typing import Callable, Optional, Sequence, Tuple, Union

import torch

from ..common.windows import (Window, as_window, check_overlap, fitted_window, is_int,
                              window_slices, window_starts)

__all__ = ['gaussian_importance_map', 'window_starts', 'window_weight_sum',
           'sliding_window_logits', 'as_window', 'check_overlap']

PredictFn = Callable[[torch.Tensor], torch.Tensor]


def gaussian_importance_map(window: Window, sigma_scale: float = 0.125,
                            dtype: torch.dtype = torch.float32,
                            device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """nnU-Net's per-pixel window weight ``(h, w)``: a centred Gaussian, maximum 1, no zeros.

    Args:
        window: the window's ``(h, w)`` (or one int for both).
        sigma_scale: the Gaussian's sigma per axis as a fraction of that axis' side.
        dtype: the map's dtype.
        device: the map's device.
    """
    sides = as_window(window)
    if isinstance(sigma_scale, bool) or not isinstance(sigma_scale, numbers.Real) \
            or not sigma_scale > 0:
        raise ValueError(f'sigma_scale must be a positive number, got {sigma_scale!r}')
    axes = []
    for side in sides:
        # centred between the two middle pixels of an even side, so the map is exactly symmetric;
        # the exponent is taken relative to its smallest value so the maximum is exactly 1 and
        # a tiny sigma cannot underflow the whole map to 0
        offset = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) / (sigma_scale * side)
        squared = offset ** 2
        axes.append(torch.exp(-0.5 * (squared - squared.min())))
    weights = (axes[0][:, None] * axes[1][None, :]).to(dtype)
    # a weight of 0 would leave pixels covered only by window borders undefined (0 / 0)
    nonzero = weights[weights > 0]
    weights[weights == 0] = nonzero.min()
    return weights.to(device)


def _weight_map(window: Tuple[int, int], gaussian: bool, dtype: torch.dtype,
                device: torch.device) -> torch.Tensor:
    if gaussian:
        return gaussian_importance_map(window, dtype=dtype, device=device)
    return torch.ones(window, dtype=dtype, device=device)


def window_weight_sum(size: Sequence[int], window: Window, overlap: float = 0.5,
                      gaussian: bool = True, dtype: torch.dtype = torch.float32,
                      device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """The weight each pixel of an image of ``size`` accumulates over all its windows ``(H, W)``:
    what :func:`sliding_window_logits` divides by.

    Args:
        size: the image's ``(H, W)``.
        window: the window's ``(h, w)`` or one int; shrunk to the image where it is larger.
        overlap: the fraction of a window its neighbour shares, in [0, 1).
        gaussian: Gaussian weights (else every pixel of a window weighs 1).
        dtype: the result's dtype.
        device: the result's device.
    """
    window = fitted_window(size, window)
    weight = _weight_map(window, gaussian, dtype, torch.device(device or 'cpu'))
    total = torch.zeros(tuple(int(side) for side in size), dtype=dtype, device=weight.device)
    for rows, columns in window_slices(size, window, overlap):
        total[rows, columns] += weight
    return total


def sliding_window_logits(predict_fn: PredictFn, inputs: torch.Tensor, window: Window,
                          overlap: float = 0.5, gaussian: bool = True,
                          window_batch_size: int = 4) -> torch.Tensor:
    """Logits ``(N, K, H, W)`` of ``inputs`` ``(N, C, H, W)`` predicted window by window.

    Windows of all images are batched together, at most ``window_batch_size`` per call of
    ``predict_fn``, so memory depends on that and not on the image size. Overlapping predictions
    are averaged with per-pixel weights (Gaussian, or uniform). Where the image is smaller than
    the window along an axis, the window shrinks to the image's side there (a
    :meth:`SegmentationModel.logits` pads any size to its stride itself).

    Args:
        predict_fn: ``(B, C, h, w)`` -> logits ``(B, K, h, w)``.
        inputs: the images, ``(N, C, H, W)``.
        window: the window's ``(h, w)`` or one int (typically the training crop size).
        overlap: the fraction of a window its neighbour shares, in [0, 1) (nnU-Net: 0.5).
        gaussian: weight each window's pixels with :func:`gaussian_importance_map`.
        window_batch_size: windows per call of ``predict_fn``.
    """
    if inputs.dim() != 4 or not len(inputs):
        raise ValueError(f'inputs must be (N, C, H, W) with N >= 1, got shape '
                         f'{tuple(inputs.shape)}')
    if not is_int(window_batch_size) or window_batch_size < 1:
        raise ValueError(f'window_batch_size must be a positive int, got {window_batch_size!r}')
    overlap = check_overlap(overlap)
    size = tuple(inputs.shape[-2:])
    window = fitted_window(size, window)
    windows = [(index, rows, columns) for index in range(len(inputs))
               for rows, columns in window_slices(size, window, overlap)]
    summed: Optional[torch.Tensor] = None
    weight: Optional[torch.Tensor] = None
    for first in range(0, len(windows), window_batch_size):
        chunk = windows[first:first + window_batch_size]
        batch = torch.stack([inputs[i, :, rows, columns] for i, rows, columns in chunk])
        logits = predict_fn(batch)
        if logits.dim() != 4 or logits.shape[0] != len(chunk) or tuple(logits.shape[-2:]) != window:
            raise ValueError(f'predict_fn must map (B, C, h, w) windows to (B, K, h, w) logits; '
                             f'for {len(chunk)} windows of {window} it returned shape '
                             f'{tuple(logits.shape)}')
        if summed is None:
            # accumulate in at least float32: half-precision sums of many windows lose digits
            dtype = torch.promote_types(logits.dtype, torch.float32)
            summed = torch.zeros((len(inputs), logits.shape[1], *size), dtype=dtype,
                                 device=logits.device)
            weight = _weight_map(window, gaussian, dtype, logits.device)
        for (i, rows, columns), window_logits in zip(chunk, logits):
            summed[i, :, rows, columns] += window_logits * weight
    total = window_weight_sum(size, window, overlap, gaussian, summed.dtype, summed.device)
    return (summed / total).to(logits.dtype)
