"""Convolutions of small maps on CPU without oneDNN's per-call cost.

PyTorch runs CPU convolutions through oneDNN (``mkldnn_convolution``), which costs about 70 us
forward and 110-200 us backward per call whatever the size (2 threads, measured on this
project's 2-core CPU VM, docs/benchmarks.md "Small maps"). EfficientDet's BiFPN and heads run many
64-channel convolutions on maps of 1 x 1 to 16 x 16 (P3-P7 of a 128 px crop), and every
squeeze-and-excitation gate is a pair of 1 x 1 convolutions of a 1 x 1 map: there the fixed cost
is most of the time. Two cheaper exact formulations take over where they were measured faster:

- pointwise (1 x 1, stride 1, one group): PyTorch's own matrix-multiply convolution
  (``aten.thnn_conv2d``) for weights of at most :data:`POINTWISE_MAX_WEIGHT` elements on at
  most :data:`POINTWISE_MAX_PIXELS` output pixels (batch included), for any weight on 1 x 1
  maps (the gates) and on at most :data:`POINTWISE_WIDE_MAX_PIXELS` pixels; on maps of up to
  :data:`LINEAR_MAX_SIDE_PIXELS` pixels one ``F.linear`` over the batch's pixels;
- depthwise 3 x 3 (stride 1, padding 1): ``unfold`` and a weighted sum over the nine taps, for
  inputs of at most :data:`DEPTHWISE_MAX_ELEMENTS` elements.

They run in training (gradients flow), where the backward doubles the fixed cost. Inference,
every GPU tensor, half precision, autocast, TorchScript, tracing exporters and ``torch.compile``
keep ``F.conv2d``. Outputs and gradients equal it up to float summation order.
``EFFNET_SMALL_CONV=0`` (or :func:`set_small_conv`) turns the paths off for comparisons.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .depthwise import exporting

__all__ = ['POINTWISE_MAX_WEIGHT', 'POINTWISE_MAX_PIXELS', 'LINEAR_MAX_SIDE_PIXELS',
           'POINTWISE_WIDE_MAX_PIXELS', 'DEPTHWISE_MAX_ELEMENTS',
           'set_small_conv', 'small_conv_enabled', 'small_conv_path', 'small_conv2d',
           'PointwiseConv2d']

#: largest pointwise weight (out x in channels) taking the matrix-multiply path on maps > 1 x 1:
#: 128 x 128; for 320 -> 1152 channels on 8 x 2 x 2 pixels it was 3.4x slower than oneDNN
POINTWISE_MAX_WEIGHT = 128 * 128
#: largest batch x height x width of such a pointwise conv (64 channels: 0.39-0.53x oneDNN's
#: time at 512 pixels, the gain fading to 0.74x at 2048)
POINTWISE_MAX_PIXELS = 1024
#: largest height x width of a wider pointwise conv taking one matrix product (2 x 2 maps)
LINEAR_MAX_SIDE_PIXELS = 4
#: largest batch x height x width of a wider pointwise conv taking ``thnn_conv2d`` (0.55-0.7x
#: oneDNN's time for 192 <-> 1152 channels on 2 x 4 x 4 pixels, level or slower from 128)
POINTWISE_WIDE_MAX_PIXELS = 32
#: largest batch x channels x height x width of a depthwise 3 x 3 conv taking the unfold path
#: (0.34-0.9x oneDNN's time up to 2304 elements, 1.1-2.1x slower from 6144)
DEPTHWISE_MAX_ELEMENTS = 4096

_ENABLED = os.environ.get('EFFNET_SMALL_CONV', '1').strip().lower() not in ('0', 'false', 'no')


def set_small_conv(enabled: bool) -> bool:
    """Turn the small-map paths on or off for this process; returns the old value."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(enabled)
    return previous


def small_conv_enabled() -> bool:
    """Whether the small-map paths are on (the default)."""
    return _ENABLED


def _eligible(x: Tensor, weight: Tensor) -> bool:
    """Training (gradients flow) on CPU float32/float64 operands of one dtype, outside autocast,
    tracing and compiling."""
    return (_ENABLED and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
            and x.device.type == 'cpu' and x.dim() == 4
            and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype
            and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling()
            and not exporting())


def _keep_format(out: Tensor, x: Tensor) -> Tensor:
    """``out`` in ``x``'s layout (channels-last or contiguous); a no-op when it already is."""
    if x.shape[1] > 1 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


def _thnn_pointwise(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """A 1 x 1 conv as PyTorch's per-sample matrix products."""
    return torch.ops.aten.thnn_conv2d(x, weight, [1, 1], bias, [1, 1], [0, 0])


def _linear_pointwise(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """A 1 x 1 conv as one matrix product over every pixel of the batch (channels-last strides)."""
    batch, channels, height, width = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    out = F.linear(rows, weight.reshape(weight.shape[0], channels), bias)
    return out.view(batch, height, width, -1).permute(0, 3, 1, 2)


def _unfold_depthwise3x3(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """A depthwise 3 x 3 conv (stride 1, padding 1) as a weighted sum over the unfolded taps."""
    batch, channels, height, width = x.shape
    taps = F.unfold(x, 3, padding=1).view(batch, channels, 9, height * width)
    out = (taps * weight.reshape(1, channels, 9, 1)).sum(2).view(batch, channels, height, width)
    return out if bias is None else out + bias.view(1, channels, 1, 1)


def _pointwise_path(x: Tensor, weight: Tensor) -> Optional[str]:
    batch, pixels = x.shape[0], x.shape[2] * x.shape[3]
    small_weight = weight.numel() <= POINTWISE_MAX_WEIGHT
    if pixels == 1 or (small_weight and batch * pixels <= POINTWISE_MAX_PIXELS):
        return 'thnn'
    if pixels <= LINEAR_MAX_SIDE_PIXELS:
        # thnn_conv2d's per-sample products are up to 3.4x slower than oneDNN on 2 x 2 maps of
        # wide layers; one product over the batch's pixels is 0.4-0.7x oneDNN's time
        return 'linear'
    if batch * pixels <= POINTWISE_WIDE_MAX_PIXELS:
        return 'thnn'
    return None


@torch.jit.unused
def small_conv_path(conv: nn.Conv2d, x: Tensor) -> Optional[str]:
    """The formulation :func:`small_conv2d` runs for ``conv(x)``: 'thnn' or 'linear' (1 x 1),
    'unfold' (depthwise 3 x 3), or None where ``F.conv2d`` runs.

    Args:
        conv: a zero-padded ``nn.Conv2d`` (its stride, padding, dilation, groups and weights).
        x: its (N, C, H, W) input.
    """
    weight = conv.weight
    if (not _eligible(x, weight) or conv.padding_mode != 'zeros' or conv.stride != (1, 1)
            or isinstance(conv.padding, str)):
        return None
    kernel = tuple(weight.shape[2:])
    if kernel == (1, 1) and conv.groups == 1 and conv.padding == (0, 0):  # any dilation
        return _pointwise_path(x, weight)
    if (kernel == (3, 3) and conv.groups == x.shape[1] == weight.shape[0]
            and weight.shape[1] == 1 and conv.padding == (1, 1) and conv.dilation == (1, 1)):
        return 'unfold' if x.numel() <= DEPTHWISE_MAX_ELEMENTS else None
    return None


@torch.jit.unused
def small_conv2d(conv: nn.Conv2d, x: Tensor) -> Optional[Tensor]:
    """``conv(x)`` through a small-map path (:func:`small_conv_path`), or None where
    ``F.conv2d`` should run.

    Args:
        conv: a zero-padded ``nn.Conv2d`` (its stride, padding, dilation, groups and weights).
        x: its (N, C, H, W) input.
    """
    path = small_conv_path(conv, x)
    if path is None:
        return None
    if path == 'thnn':
        out = _thnn_pointwise(x, conv.weight, conv.bias)
    elif path == 'linear':
        out = _linear_pointwise(x, conv.weight, conv.bias)
    else:
        out = _unfold_depthwise3x3(x, conv.weight, conv.bias)
    return _keep_format(out, x)


class PointwiseConv2d(nn.Conv2d):
    """A 1 x 1 ``nn.Conv2d`` that takes :func:`small_conv2d`'s path on small CPU maps; the same
    parameters, outputs and hooks as ``nn.Conv2d``."""

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting():
            out = small_conv2d(self, x)
            if out is not None:
                return out
        return self._conv_forward(x, self.weight, self.bias)
