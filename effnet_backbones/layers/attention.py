"""Channel attention inside blocks (SE, or cSE / sSE / scSE) and on the taps (scSE)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .norm_act import ActFactory
from .small_conv import PointwiseConv2d

__all__ = ['SqueezeExcite', 'SCSE', 'ChannelSE', 'SpatialSE', 'BLOCK_ATTENTION',
           'create_block_attention']

#: What an MBConv block may use as attention: 'se' (the paper's), scSE or one of its halves, none.
BLOCK_ATTENTION = ('se', 'cse', 'sse', 'scse', None)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pooling, 1x1 reduce, activation, 1x1 expand, sigmoid gate.

    Args:
        channels: channels gated (the block's expanded width).
        reduced_channels: bottleneck width (0.25 x the block's input channels in EfficientNet).
        act_layer: activation between the two 1x1 convolutions.
    """

    def __init__(self, channels: int, reduced_channels: int, act_layer: ActFactory = nn.SiLU) -> None:
        super().__init__()
        self.reduce = PointwiseConv2d(channels, reduced_channels, 1)
        self.act = act_layer()
        self.expand = PointwiseConv2d(reduced_channels, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, C, 1, 1) sigmoid gate for ``x``."""
        return self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def _channel_gate(channels: int, reduction: int) -> nn.Sequential:
    """scSE's channel gate: pool, 1x1 reduce, ReLU, 1x1 expand, sigmoid."""
    if not isinstance(reduction, int) or isinstance(reduction, bool) or reduction < 1:
        raise ValueError(f'scse_reduction must be a positive int, got {reduction!r}')
    hidden = max(1, channels // reduction)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), PointwiseConv2d(channels, hidden, 1),
                         nn.ReLU(inplace=True), PointwiseConv2d(hidden, channels, 1), nn.Sigmoid())


def _spatial_gate(channels: int) -> nn.Sequential:
    """scSE's spatial gate: a 1x1 projection to one map and a sigmoid."""
    return nn.Sequential(PointwiseConv2d(channels, 1, 1), nn.Sigmoid())


class ChannelSE(nn.Module):
    """The channel half of scSE (cSE): ``x * channel_gate(x)``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.channel_gate = _channel_gate(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_gate(x)


class SpatialSE(nn.Module):
    """The spatial half of scSE (sSE): ``x * spatial_gate(x)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.spatial_gate = _spatial_gate(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.spatial_gate(x)


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
        self.channel_gate = _channel_gate(channels, reduction)
        self.spatial_gate = _spatial_gate(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_gate(x) + x * self.spatial_gate(x)


def create_block_attention(kind: Optional[str], channels: int, se_channels: int,
                           act_layer: ActFactory, reduction: int = 16) -> nn.Module:
    """The attention of one MBConv block on its ``channels`` expanded features.

    Args:
        kind: one of :data:`BLOCK_ATTENTION`: 'se' (squeeze-and-excitation ``se_channels`` wide,
            the paper's), 'cse', 'sse', 'scse' (scSE or a half of it, bottleneck
            ``channels // reduction``), or None for no attention.
        se_channels: SE bottleneck width; 0 also means no attention.
        act_layer: activation of the SE bottleneck (scSE's is ReLU, as in smp).
    """
    if kind not in BLOCK_ATTENTION:
        raise ValueError(f'block_attention must be one of {BLOCK_ATTENTION}, got {kind!r}')
    if kind is None or (kind == 'se' and se_channels < 1):
        return nn.Identity()
    if kind == 'se':
        return SqueezeExcite(channels, se_channels, act_layer)
    if kind == 'cse':
        return ChannelSE(channels, reduction)
    if kind == 'sse':
        return SpatialSE(channels)
    return SCSE(channels, reduction)
