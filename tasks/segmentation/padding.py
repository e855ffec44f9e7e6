"""Padding to a multiple of the network stride, and cropping back.

smp decoders need sides divisible by the encoder's output stride; rather than reject a 250 x 333
image, we pad at the bottom and right, run the network, and crop the prediction back.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ['padded_size', 'pad_to', 'pad_and_stack']


def padded_size(size: Sequence[int], divisor: int) -> Tuple[int, int]:
    """``(H, W)`` rounded up to multiples of ``divisor``."""
    return tuple(-(-int(side) // divisor) * divisor for side in size)  # type: ignore[return-value]


def pad_to(tensor: torch.Tensor, size: Sequence[int], value: float) -> torch.Tensor:
    """Pad the last two dims of ``tensor`` at the bottom and right to ``size``."""
    height, width = tensor.shape[-2:]
    if (height, width) == tuple(size):
        return tensor
    return F.pad(tensor, [0, size[1] - width, 0, size[0] - height], value=value)


def pad_and_stack(tensors: Sequence[torch.Tensor], divisor: int, value: float) -> torch.Tensor:
    """Stack tensors of different sizes, padding each to the batch's largest size (rounded up)."""
    height = max(tensor.shape[-2] for tensor in tensors)
    width = max(tensor.shape[-1] for tensor in tensors)
    size = padded_size((height, width), divisor)
    return torch.stack([pad_to(tensor, size, value) for tensor in tensors])
