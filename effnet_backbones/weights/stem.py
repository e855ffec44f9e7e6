"""Reusing an RGB stem kernel for another number of input channels (one rule, as timm and smp)."""
from __future__ import annotations

import math

import torch

from .checkpoint import WeightsError

__all__ = ['adapt_stem_weight', 'stem_adaptable', 'STEM_WEIGHT']

#: Key of the stem convolution weight in our layout.
STEM_WEIGHT = 'stem.conv.weight'
Tensor = torch.Tensor


def adapt_stem_weight(weight: Tensor, in_chans: int) -> Tensor:
    """Adapt an RGB stem kernel (O, 3, kH, kW) to ``in_chans`` inputs, as timm and smp do.

    1 channel: sum over RGB (a gray image gives what its RGB copy gave). N channels: repeat the
    RGB kernels cyclically and scale by 3/N, keeping the activation scale for inputs of similar
    statistics.
    """
    channels = weight.shape[1]
    if channels == in_chans:
        return weight
    if channels != 3:
        raise WeightsError(f'cannot adapt a stem with {channels} input channels to in_chans='
                           f'{in_chans}; only RGB (3-channel) stems can be adapted')
    dtype = weight.dtype
    weight = weight.float()  # summing half-precision kernels loses digits
    if in_chans == 1:
        adapted = weight.sum(dim=1, keepdim=True)
    else:
        repeats = math.ceil(in_chans / 3)
        adapted = weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (3.0 / in_chans)
    return adapted.to(dtype)


def stem_adaptable(key: str, value: Tensor, target: Tensor) -> bool:
    return (key == 'stem.conv.weight' and value.dim() == 4 and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:] and value.shape[1] == 3)

