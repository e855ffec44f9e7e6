"""What ``tools/export.py`` exports from a trained task model, and the export itself."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from effnet_backbones import EfficientNet
from effnet_backbones.export import export_model, max_abs_difference

__all__ = ['PadCropLogits', 'ExportTarget', 'export_target', 'export_checked', 'PARTS']

PARTS = ('model', 'backbone')


class PadCropLogits(nn.Module):
    """An smp network that takes any input size: pad bottom/right to the stride, crop back.

    Written with ``(-side) % stride`` so that exported graphs keep the size symbolic.
    """

    def __init__(self, net: nn.Module, stride: int) -> None:
        super().__init__()
        self.net, self.stride = net, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        padded = F.pad(x, [0, (-width) % self.stride, 0, (-height) % self.stride])
        return self.net(padded)[..., :height, :width]


@dataclass
class ExportTarget:
    """The module to export, with the input channels it takes."""

    module: nn.Module
    in_channels: int
    description: str
    #: exported input sides must be multiples of this (1: any size)
    size_multiple: int = 1


def _find_backbone(model: nn.Module) -> EfficientNet:
    backbones = [m for m in model.modules() if isinstance(m, EfficientNet)]
    if not backbones:
        raise ValueError(f'{type(model).__name__} holds no effnet_backbones.EfficientNet to export')
    return backbones[0]


def export_target(model: nn.Module, part: str = 'model') -> ExportTarget:
    """The exportable module of a task model (or a bare backbone).

    Args:
        part: 'model' (the whole network: U-Net logits; a bare backbone's taps) or 'backbone'
            (the EfficientNet taps inside any model).
    """
    if part not in PARTS:
        raise ValueError(f'part must be one of {PARTS}, got {part!r}')
    if part == 'backbone' or isinstance(model, EfficientNet):
        backbone = _find_backbone(model)
        return ExportTarget(backbone.eval(), backbone.in_chans,
                            f'EfficientNet-{backbone.arch} taps {backbone.out_channels}')
    net = getattr(model, 'net', None)
    if net is not None and hasattr(model, 'size_divisor'):  # tasks.segmentation.SegmentationModel
        wrapped = PadCropLogits(net, model.size_divisor).eval()
        return ExportTarget(wrapped, _find_backbone(net).in_chans,
                            f'{type(net).__name__} logits ({model.num_classes} classes), any size')
    if hasattr(model, 'export_network'):  # a task model that names its exportable network
        network = model.export_network()
        multiple = getattr(network, 'size_divisor', 1)
        # the BiFPN's resampling sizes of a padded symbolic side defeat torch.export's
        # symbolic shapes: the exported graph takes multiples of the divisor (PyTorch: any size)
        return ExportTarget(network, _find_backbone(model).in_chans,
                            f'{type(model).__name__} network part (raw head outputs; anchors, '
                            f'decoding and NMS outside), input sides multiples of {multiple}',
                            size_multiple=multiple)
    raise ValueError(f'cannot export the whole {type(model).__name__}: torchvision detectors '
                     f'post-process with data-dependent shapes (NMS); export part="backbone" '
                     f'and run the head in PyTorch')


def export_checked(target: ExportTarget, path: str, fmt: str, sizes: Optional[List[int]] = None,
                   opset: int = 18) -> float:
    """Export ``target`` and return the max abs difference to PyTorch on a few input sizes
    (rounded up to the target's ``size_multiple``)."""
    multiple = target.size_multiple
    sizes = [-(-size // multiple) * multiple for size in (sizes or [64, 97])]
    extra = 13 if multiple == 1 else multiple
    # an example of 2 blocks: torch.export would fix any side whose deepest map is 1 x 1
    side = sizes[0] if multiple == 1 else max(sizes[0], 2 * multiple)
    example = torch.randn(2, target.in_channels, side, side)
    export_model(target.module, path, fmt, example, opset=opset, size_multiple=multiple)
    inputs = [torch.randn(1, target.in_channels, size, size + extra) for size in sizes]
    return max_abs_difference(target.module, Path(path), fmt, inputs)
