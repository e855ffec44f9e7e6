"""Model figures: parameter counts and multiply-accumulates (MACs) of convolutions and linears."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn

from .backbone import EfficientNet
from .body import residual_blocks
from .classifier import EfficientNetClassifier
from .spec import ARCHS, build_plan, check_arch

__all__ = ['count_parameters', 'count_macs', 'MacCounter', 'describe_variant', 'describe_variants',
           'markdown_table']


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class MacCounter:
    """Counts the multiply-accumulates of every conv and linear forward of a module while active.

    ``with MacCounter(model) as counter: model(x)`` then ``counter.macs``. Forwards run while
    autograd is computing a backward pass (activation checkpointing's recomputation) are not
    counted: they are the backward's cost, which the 2x rule of training FLOPs already covers.
    This is the convention of the EfficientNet paper, torchvision and timm (fvcore): the
    element-wise work of norms, activations and gates is not counted.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.macs = 0
        self._handles: List[Any] = []

    def _count(self, layer: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        if _in_backward():
            return
        if isinstance(layer, nn.Conv2d):
            per_output = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels // layer.groups
        else:
            per_output = layer.in_features
        self.macs += output.numel() * per_output

    def __enter__(self) -> 'MacCounter':
        self.macs = 0
        self._handles = [layer.register_forward_hook(self._count) for layer in self.module.modules()
                         if isinstance(layer, (nn.Conv2d, nn.Linear))]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _in_backward() -> bool:
    """Whether autograd is running a backward pass now (checkpointed layers recompute in it)."""
    graph_task_id = getattr(torch._C, '_current_graph_task_id', None)
    return graph_task_id is not None and graph_task_id() != -1


def count_macs(module: nn.Module, input_size: Sequence[int]) -> int:
    """MACs of one forward pass at ``input_size`` (N, C, H, W), counting conv and linear layers
    (see :class:`MacCounter` for the convention)."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    try:
        with torch.no_grad(), MacCounter(module) as counter:
            module(torch.zeros(*input_size, device=device))
    finally:
        module.train(was_training)
    return counter.macs


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
    """Render dict rows as a GitHub markdown table; lists print as 'a/b/c'. The columns are every
    key in first-seen order; a row without one (a failed run's) leaves its cell empty."""
    if not rows:
        return ''
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(_cell(row[col]) if col in row else '' for col in columns) + ' |'
              for row in rows]
    return '\n'.join(lines)
