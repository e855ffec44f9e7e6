"""Channel attention inside blocks (SE) and on the taps (scSE)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .norm_act import ActFactory

__all__ = ['SqueezeExcite', 'SCSE']


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pooling, 1x1 reduce, activation, 1x1 expand, sigmoid gate.

    Args:
        channels: channels gated (the block's expanded width).
        reduced_channels: bottleneck width (0.25 x the block's input channels in EfficientNet).
        act_layer: activation between the two 1x1 convolutions.
    """

    def __init__(self, channels: int, reduced_channels: int, act_layer: ActFactory = nn.SiLU) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced_channels, 1)
        self.act = act_layer()
        self.expand = nn.Conv2d(reduced_channels, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, C, 1, 1) sigmoid gate for ``x``."""
        return self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation (Roy et al., 2018), as in smp.

    ``out = x * cSE(x) + x * sSE(x)``: a channel gate from pooled features and a spatial gate from
    a 1x1 projection, summed.

    Args:
        channels: channels of the tap.
        reduction: channel-gate bottleneck is ``max(1, channels // reduction)``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f'scse_reduction must be a positive int, got {reduction!r}')
        hidden = max(1, channels // reduction)
        self.channel_gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1), nn.Sigmoid())
        self.spatial_gate = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_gate(x) + x * self.spatial_gate(x)
