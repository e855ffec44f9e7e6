"""What the backbone and the classifier are both built from: stem + stages, initialisation, BN
defaults."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch.nn as nn

from .blocks import MBConv, build_stage
from .layers import ConvNormAct
from .spec import NetworkPlan, check_arch

__all__ = ['NormSpec', 'ActSpec', 'default_norm_args', 'build_body', 'init_weights',
           'zero_init_residual_', 'residual_blocks']

#: A norm given by name ('bn', 'gn' ...), mmcv-style dict or ``factory(channels)``.
NormSpec = Union[str, Dict[str, Any], Callable[[int], nn.Module]]
#: An activation given by name ('swish', 'relu6' ...) or ``factory()``.
ActSpec = Union[str, Callable[[], nn.Module]]


def default_norm_args(arch: str) -> Tuple[float, float]:
    """BN (eps, momentum) torchvision uses for ``arch``: 1e-5/0.1 for b0-b4, 1e-3/0.01 for b5-b7."""
    return (1e-3, 0.01) if check_arch(arch) in ('b5', 'b6', 'b7') else (1e-5, 0.1)


def build_body(plan: NetworkPlan, num_stages: int, in_chans: int, norm_layer: Callable[[int], nn.Module],
               act_layer: Callable[[], nn.Module], padding: str,
               memory_efficient: bool = False, block_attention: Optional[str] = 'se',
               shortcut: Optional[str] = None) -> Tuple[nn.Module, nn.ModuleList]:
    """Build the stem and the first ``num_stages`` stages of ``plan`` (block options as for
    :class:`~effnet_backbones.blocks.MBConv`)."""
    stem = ConvNormAct(in_chans, plan.stem_channels, 3, norm_layer, act_layer, stride=2,
                       padding=padding, memory_efficient=memory_efficient)
    stages = nn.ModuleList(build_stage(blocks, norm_layer, act_layer, padding, memory_efficient,
                                       block_attention, shortcut)
                           for blocks in plan.stages[:num_stages])
    return stem, stages


def init_weights(module: nn.Module) -> None:
    """torchvision's EfficientNet initialisation: He (fan-out) convs, unit norms, uniform linears."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.SyncBatchNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.out_features ** 0.5
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def residual_blocks(module: nn.Module) -> list:
    """The MBConv blocks of ``module`` that add a residual (identity or projection shortcut)."""
    return [block for block in module.modules() if isinstance(block, MBConv) and block.has_skip]


def zero_init_residual_(module: nn.Module) -> int:
    """Zero the last norm's scale in every residual MBConv branch (Goyal et al. 2017; Bag of
    Tricks): each such block starts as its shortcut, so the deep network starts shallow.

    Returns the number of blocks changed.
    """
    blocks = residual_blocks(module)
    for block in blocks:
        norm = block.project.norm
        if getattr(norm, 'weight', None) is None:
            raise ValueError(f'zero_init_residual needs norms with a learnable scale; the blocks '
                             f'use {type(norm).__name__} without one')
        nn.init.zeros_(norm.weight)
    return len(blocks)
