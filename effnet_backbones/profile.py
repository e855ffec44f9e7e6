"""Model figures: parameter counts and multiply-accumulates (MACs) of convolutions and linears."""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn as nn

__all__ = ['count_parameters', 'count_macs']


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_macs(module: nn.Module, input_size: Sequence[int]) -> int:
    """MACs of one forward pass at ``input_size`` (N, C, H, W), counting conv and linear layers.

    This is the convention of the EfficientNet paper, torchvision and timm (fvcore): the
    element-wise work of norms, activations and gates is not counted.
    """
    total: List[int] = [0]

    def conv_hook(conv: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        kernel = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels // conv.groups
        total[0] += output.numel() * kernel

    def linear_hook(linear: nn.Linear, _inputs, output: torch.Tensor) -> None:
        total[0] += output.numel() * linear.in_features

    handles = []
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d):
            handles.append(sub.register_forward_hook(conv_hook))
        elif isinstance(sub, nn.Linear):
            handles.append(sub.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(*input_size))
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    return total[0]
