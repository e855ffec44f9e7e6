"""The MBConv block (inverted residual with depthwise conv and squeeze-and-excitation)."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from .layers import ActFactory, ConvNormAct, DropPath, NormFactory, SqueezeExcite
from .layers.memory_efficient import gate_project, norm_act_conv
from .spec import BlockSpec

__all__ = ['MBConv', 'build_stage']


class MBConv(nn.Module):
    """Mobile inverted bottleneck: [1x1 expand] -> kxk depthwise -> SE -> linear 1x1 projection.

    The residual (with stochastic depth on the branch) is used when the block keeps stride 1 and
    channels, as in the paper, torchvision and timm. With ``memory_efficient`` set (and gradients
    enabled), the SE gate and the projection run as one autograd function that keeps the ungated
    input and the gate instead of their product (see :mod:`effnet_backbones.layers.memory_efficient`).

    Args:
        spec: the scaled block description (channels, kernel, stride, dilation, SE width, drop path).
        norm_layer: ``factory(channels)`` for every norm of the block.
        act_layer: ``factory()`` for the expansion, depthwise and SE activations.
        padding: 'symmetric' or TF 'same'.
        memory_efficient: save fewer activations in training (fused norm + activation, fused
            SE gate + projection); same outputs and gradients.
    """

    def __init__(self, spec: BlockSpec, norm_layer: NormFactory, act_layer: ActFactory,
                 padding: str = 'symmetric', memory_efficient: bool = False) -> None:
        super().__init__()
        mid = spec.mid_channels
        self.has_skip = spec.has_skip
        self.expand = (ConvNormAct(spec.in_channels, mid, 1, norm_layer, act_layer,
                                   memory_efficient=memory_efficient)
                       if spec.expand_ratio != 1 else nn.Identity())
        self.depthwise = ConvNormAct(mid, mid, spec.kernel_size, norm_layer, act_layer,
                                     stride=spec.stride, dilation=spec.dilation, groups=mid,
                                     padding=padding, memory_efficient=memory_efficient)
        self.se = SqueezeExcite(mid, spec.se_channels, act_layer)
        self.project = ConvNormAct(mid, spec.out_channels, 1, norm_layer, None,
                                   memory_efficient=memory_efficient)
        self.drop_path = DropPath(spec.drop_path) if self.has_skip else nn.Identity()
        self.memory_efficient = bool(memory_efficient)

    @torch.jit.unused
    def _forward_fused(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The branch output on the memory-efficient path, or None where the plain path runs."""
        # compiled graphs get the same saving from the partitioner's rematerialisation
        if self.memory_efficient and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            return self._forward_memory_efficient(x)
        return None

    def _forward_memory_efficient(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.expand, ConvNormAct) and self.expand.fuses_norm_act():
            # the expanded activation is recomputed in backward instead of being kept
            out = self.depthwise.finish(norm_act_conv(self.expand.conv(x), self.expand.norm,
                                                      self.expand.act, self.depthwise.conv))
        else:
            out = self.depthwise(self.expand(x))
        return self.project.norm(gate_project(out, self.se.gate(out), self.project.conv.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._forward_fused(x) if not torch.jit.is_scripting() else None
        if out is None:
            out = self.project(self.se(self.depthwise(self.expand(x))))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out


def build_stage(blocks: Sequence[BlockSpec], norm_layer: NormFactory, act_layer: ActFactory,
                padding: str, memory_efficient: bool = False) -> nn.Sequential:
    """One stage as an ``nn.Sequential`` of MBConv blocks."""
    modules: List[nn.Module] = [MBConv(spec, norm_layer, act_layer, padding, memory_efficient)
                                for spec in blocks]
    return nn.Sequential(*modules)
