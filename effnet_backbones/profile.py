"""Model figures: parameter counts and multiply-accumulates (MACs) of convolutions and linears."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn

from .backbone import EfficientNet
from .body import residual_blocks
from .classifier import EfficientNetClassifier
from .spec import ARCHS, build_plan, check_arch

__all__ = ['count_parameters', 'count_macs', 'describe_variant', 'describe_variants',
           'markdown_table']


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
    device = next(module.parameters()).device
    try:
        with torch.no_grad():
            module(torch.zeros(*input_size, device=device))
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    return total[0]


def describe_variant(arch: str, backbone_options: Optional[Mapping[str, Any]] = None
                     ) -> Dict[str, Any]:
    """Figures of one variant: parameters, GMACs at its resolution, blocks, skips, taps.

    Models are built on the meta device, so describing B7 costs no memory and no time.

    Args:
        arch: 'b0' ... 'b7'.
        backbone_options: :class:`~effnet_backbones.EfficientNet` options (``shortcut``,
            ``block_attention`` ...); the row then also holds them and the backbone's parameter
            change against the default architecture, and counts skips of the optioned backbone.
    """
    plan = build_plan(check_arch(arch))
    options = dict(backbone_options or {})
    resolution = plan.scaling.resolution
    all_levels = dict(out_indices=(0, 1, 2, 3, 4))
    with torch.device('meta'):
        classifier = EfficientNetClassifier(plan.arch)
        backbone = EfficientNet(plan.arch, **{**options, **all_levels})
        default = EfficientNet(plan.arch, **all_levels) if options else backbone
    blocks = plan.blocks
    skips = len(residual_blocks(backbone))
    row: Dict[str, Any] = {'arch': plan.arch}
    if options:
        row['options'] = ', '.join(f'{key}={value!r}' for key, value in options.items())
    row.update({
        'params_backbone': count_parameters(backbone),
        'params_full': count_parameters(classifier),
        'gmacs': round(count_macs(classifier, (1, 3, resolution, resolution)) / 1e9, 2),
        'blocks': len(blocks),
        'skip_blocks': skips,
        'skip_ratio': round(skips / len(blocks), 3),
        'tap_channels': list(backbone.out_channels),
        'tap_strides': list(backbone.strides),
        'resolution': resolution,
        'dropout': plan.scaling.dropout,
    })
    if options:
        row['params_change'] = row['params_backbone'] - count_parameters(default)
    return row


def describe_variants(archs: Iterable[str] = ARCHS,
                      backbone_options: Optional[Mapping[str, Any]] = None) -> List[Dict[str, Any]]:
    """:func:`describe_variant` for each of ``archs`` (default all, b0 ... b7)."""
    return [describe_variant(arch, backbone_options) for arch in archs]


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return '/'.join(str(item) for item in value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f'{value:,}'
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Render dict rows (same keys) as a GitHub markdown table; lists print as 'a/b/c'."""
    if not rows:
        return ''
    columns = list(rows[0])
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(_cell(row[col]) for col in columns) + ' |' for row in rows]
    return '\n'.join(lines)
