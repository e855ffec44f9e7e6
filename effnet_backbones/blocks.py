"""The MBConv block (inverted residual with depthwise conv and squeeze-and-excitation)."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from .layers import (ActFactory, ConvNormAct, DropPath, NormFactory, PointwiseConv2d,
                     create_block_attention)
from .layers.memory_efficient import gate_project, norm_act_conv
from .spec import BlockSpec

__all__ = ['MBConv', 'ResNetDShortcut', 'SHORTCUTS', 'build_stage']

#: Shortcuts of blocks that change stride or channels: None (none, the paper's) or 'resnet_d'.
SHORTCUTS = (None, 'resnet_d')


def _shortcut_pool(stride: int) -> nn.Module:
    # ceil_mode gives ceil(H / stride), the size the strided depthwise conv produces for any H
    if stride == 1:
        return nn.Identity()
    return nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)


class ResNetDShortcut(nn.Module):
    """ResNet-D's projection shortcut (He et al., Bag of Tricks, 2019): average pooling for the
    stride, then 1x1 conv + norm for the channels, so a block that changes either still has a
    residual path.

    Args:
        in_channels, out_channels: the block's.
        stride: the block's stride (1 when a dilation replaced it).
        norm_layer: ``factory(channels)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_layer: NormFactory) -> None:
        super().__init__()
        self.pool = _shortcut_pool(stride)
        self.conv = PointwiseConv2d(in_channels, out_channels, 1, bias=False)
        self.norm = norm_layer(out_channels)

    def set_stride(self, stride: int) -> None:
        """Follow the block's depthwise stride after an output-stride change (no weights change)."""
        self.pool = _shortcut_pool(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.pool(x)))


class MBConv(nn.Module):
    """Mobile inverted bottleneck: [1x1 expand] -> kxk depthwise -> SE -> linear 1x1 projection.

    The residual (with stochastic depth on the branch) is used when the block keeps stride 1 and
    channels, as in the paper, torchvision and timm; with ``shortcut='resnet_d'`` the other blocks
    get one too, through :class:`ResNetDShortcut`. With ``memory_efficient`` set (and gradients
    enabled), the SE gate and the projection run as one autograd function that keeps the ungated
    input and the gate instead of their product (see :mod:`effnet_backbones.layers.memory_efficient`).

    Args:
        spec: the scaled block description (channels, kernel, stride, dilation, SE width, drop path).
        norm_layer: ``factory(channels)`` for every norm of the block.
        act_layer: ``factory()`` for the expansion, depthwise and SE activations.
        padding: 'symmetric' or TF 'same'.
        memory_efficient: save fewer activations in training (fused norm + activation, fused
            SE gate + projection); same outputs and gradients.
        attention: 'se' (the paper's), 'cse', 'sse', 'scse' or None, see
            :func:`~effnet_backbones.layers.create_block_attention`.
        shortcut: None (the paper's: only stride-1, same-width blocks add their input) or
            'resnet_d'.
    """

    def __init__(self, spec: BlockSpec, norm_layer: NormFactory, act_layer: ActFactory,
                 padding: str = 'symmetric', memory_efficient: bool = False,
                 attention: Optional[str] = 'se', shortcut: Optional[str] = None) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f'shortcut must be one of {SHORTCUTS}, got {shortcut!r}')
        mid = spec.mid_channels
        self.shortcut: nn.Module = nn.Identity()
        if not spec.has_skip and shortcut == 'resnet_d':
            self.shortcut = ResNetDShortcut(spec.in_channels, spec.out_channels, spec.stride,
                                            norm_layer)
        self.has_skip = spec.has_skip or shortcut == 'resnet_d'
        self.expand = (ConvNormAct(spec.in_channels, mid, 1, norm_layer, act_layer,
                                   memory_efficient=memory_efficient)
                       if spec.expand_ratio != 1 else nn.Identity())
        self.depthwise = ConvNormAct(mid, mid, spec.kernel_size, norm_layer, act_layer,
                                     stride=spec.stride, dilation=spec.dilation, groups=mid,
                                     padding=padding, memory_efficient=memory_efficient)
        self.se = create_block_attention(attention, mid, spec.se_channels, act_layer)
        # the fused gate + projection needs a sigmoid channel gate, which only SE has
        self._fuses_gate = attention == 'se' and spec.se_channels > 0
        self.project = ConvNormAct(mid, spec.out_channels, 1, norm_layer, None,
                                   memory_efficient=memory_efficient)
        self.drop_path = DropPath(spec.drop_path) if self.has_skip else nn.Identity()
        self.memory_efficient = bool(memory_efficient)

    @torch.jit.unused
    def _forward_fused(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The branch output on the memory-efficient path, or None where the plain path runs."""
        # compiled too: the fused functions are custom operators the compiler keeps
        if self.memory_efficient and torch.is_grad_enabled():
            return self._forward_memory_efficient(x)
        return None

    def _forward_memory_efficient(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.expand, ConvNormAct) and self.expand.fuses_norm_act():
            # the expanded activation is recomputed in backward instead of being kept
            out = self.depthwise.finish(norm_act_conv(self.expand.conv(x), self.expand.norm,
                                                      self.expand.act, self.depthwise.conv))
        else:
            out = self.depthwise(self.expand(x))
        if not self._fuses_gate:
            return self.project(self.se(out))
        return self.project.norm(gate_project(out, self.se.gate(out), self.project.conv.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._forward_fused(x) if not torch.jit.is_scripting() else None
        if out is None:
            out = self.project(self.se(self.depthwise(self.expand(x))))
        if self.has_skip:
            out = self.drop_path(out) + self.shortcut(x)
        return out


def build_stage(blocks: Sequence[BlockSpec], norm_layer: NormFactory, act_layer: ActFactory,
                padding: str, memory_efficient: bool = False, attention: Optional[str] = 'se',
                shortcut: Optional[str] = None) -> nn.Sequential:
    """One stage as an ``nn.Sequential`` of MBConv blocks."""
    modules: List[nn.Module] = [MBConv(spec, norm_layer, act_layer, padding, memory_efficient,
                                       attention, shortcut)
                                for spec in blocks]
    return nn.Sequential(*modules)
