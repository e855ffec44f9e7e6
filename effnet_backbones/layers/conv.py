"""Convolutions with PyTorch-style symmetric or TensorFlow-style 'same' padding."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .depthwise import depthwise_conv2d, takes_fast_path
from .memory_efficient import fuses_norm_act, norm_act
from .norm_act import ActFactory, NormFactory
from .small_conv import PointwiseConv2d, small_conv2d

__all__ = ['PADDING_MODES', 'Conv2dSame', 'DepthwiseConv2d', 'DepthwiseConv2dSame', 'create_conv2d',
           'replan_conv2d', 'ConvNormAct', 'same_padding']

PADDING_MODES = ('symmetric', 'same')


def same_padding(size: int, kernel_size: int, stride: int, dilation: int) -> Tuple[int, int]:
    """(before, after) padding that TensorFlow's 'SAME' applies along one side of length ``size``.

    Integer arithmetic only, so that ``size`` may be a symbolic shape (torch.export, ONNX with
    dynamic axes) without specialising on its value.
    """
    span = (kernel_size - 1) * dilation + 1
    total = ((size + stride - 1) // stride - 1) * stride + span - size
    if span < stride:  # only then can the total go negative; EfficientNet never gets here
        total = max(total, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Conv2d with TF 'SAME' padding computed from the input size at run time (asymmetric if needed).

    Used only where the padding depends on the input size (stride > 1 or an odd total padding);
    elsewhere 'same' equals a fixed symmetric padding and a plain ``nn.Conv2d`` is built.
    """

    def pad_amounts(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """``(left, right, top, bottom)``: the padding TF 'SAME' gives an input of this size."""
        top, bottom = same_padding(height, self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(width, self.kernel_size[1], self.stride[1], self.dilation[1])
        return left, right, top, bottom

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded the way TF 'SAME' pads it for this conv."""
        return F.pad(x, list(self.pad_amounts(*x.shape[-2:])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.weight, self.bias, self.stride, 0, self.dilation,
                        self.groups)


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (one input channel per group) whose training forward computes the
    weight gradient on the fast CPU path of :mod:`effnet_backbones.layers.depthwise` (5x5 kernels
    and up), and whose 3x3 convs of small CPU maps take :mod:`~effnet_backbones.layers.small_conv`'s
    path; the same parameters, outputs and hooks as ``nn.Conv2d``."""

    @torch.jit.unused
    def fast_forward(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The output through the fast weight gradient, or None where the plain conv runs."""
        if not takes_fast_path(self, x):
            return None
        return depthwise_conv2d(x, self.weight, self.stride, self.padding, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            out = self.fast_forward(x)
            if out is None:
                out = small_conv2d(self, x)
            if out is not None:
                return out
        return self._conv_forward(x, self.weight, self.bias)


class DepthwiseConv2dSame(Conv2dSame):
    """:class:`Conv2dSame` for depthwise weights, with :class:`DepthwiseConv2d`'s fast training path."""

    @torch.jit.unused
    def fast_forward(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The output through the fast weight gradient, or None where the plain conv runs."""
        if not takes_fast_path(self, x):
            return None
        return depthwise_conv2d(self.pad(x), self.weight, self.stride, (0, 0), self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            out = self.fast_forward(x)
            if out is not None:
                return out
        return F.conv2d(self.pad(x), self.weight, self.bias, self.stride, 0, self.dilation,
                        self.groups)


def _conv_class(static: bool, depthwise: bool, pointwise: bool = False) -> type:
    if depthwise:
        return DepthwiseConv2d if static else DepthwiseConv2dSame
    if pointwise and static:
        return PointwiseConv2d
    return nn.Conv2d if static else Conv2dSame


def _is_pointwise(kernel_size: int, stride: int, groups: int) -> bool:
    return kernel_size == 1 and stride == 1 and groups == 1


def _is_depthwise(in_channels: int, out_channels: int, groups: int) -> bool:
    return groups > 1 and groups == in_channels == out_channels


def create_conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                  dilation: int = 1, groups: int = 1, padding: str = 'symmetric',
                  bias: bool = False) -> nn.Conv2d:
    """Build a conv whose output side is ceil(input side / stride) in either padding mode (for
    the odd kernels EfficientNet uses; symmetric padding of an even kernel loses a pixel).

    Args:
        padding: 'symmetric' (PyTorch ports: pad (k-1)/2 * dilation on every side) or 'same'
            (TF ports: pad computed at run time, the extra pixel going after).
    """
    _check_padding(padding)
    span = (kernel_size - 1) * dilation
    static = _pads_statically(padding, stride, span)
    cls = _conv_class(static, _is_depthwise(in_channels, out_channels, groups),
                      _is_pointwise(kernel_size, stride, groups))
    return cls(in_channels, out_channels, kernel_size, stride=stride,
               padding=span // 2 if static else 0, dilation=dilation, groups=groups, bias=bias)


def replan_conv2d(conv: nn.Conv2d, padding: str, stride: Optional[int] = None,
                  dilation: Optional[int] = None) -> None:
    """Give a conv built by :func:`create_conv2d` another padding mode, stride or dilation, in
    place; its weights stay (none changes shape). The result is what ``create_conv2d`` builds."""
    _check_padding(padding)
    stride = conv.stride[0] if stride is None else stride
    dilation = conv.dilation[0] if dilation is None else dilation
    span = (conv.kernel_size[0] - 1) * dilation
    static = _pads_statically(padding, stride, span)
    # the classes only add run-time padding or a training path to nn.Conv2d: they can be swapped
    conv.__class__ = _conv_class(static, _is_depthwise(conv.in_channels, conv.out_channels,
                                                       conv.groups),
                                 _is_pointwise(conv.kernel_size[0], stride, conv.groups))
    conv.stride, conv.dilation = (stride, stride), (dilation, dilation)
    conv.padding = (span // 2, span // 2) if static else (0, 0)


def _check_padding(padding: str) -> None:
    if padding not in PADDING_MODES:
        raise ValueError(f'padding must be one of {PADDING_MODES}, got {padding!r}')


def _pads_statically(padding: str, stride: int, span: int) -> bool:
    """Whether a fixed symmetric padding gives the mode's output: always for 'symmetric'; for TF
    'same' only at stride 1 with an even total padding."""
    return padding == 'symmetric' or (stride == 1 and span % 2 == 0)


class ConvNormAct(nn.Module):
    """Conv, then norm, then an optional activation: the unit every EfficientNet layer is made of.

    Args:
        memory_efficient: in training with gradients, run norm and activation as one autograd
            function that keeps only the conv output for backward. Whether the norm allows it is
            decided at every call from the live module, so a norm swapped after construction
            (``nn.SyncBatchNorm.convert_sync_batchnorm``) takes the plain path.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm_layer: NormFactory,
                 act_layer: Optional[ActFactory], stride: int = 1, dilation: int = 1,
                 groups: int = 1, padding: str = 'symmetric', memory_efficient: bool = False) -> None:
        super().__init__()
        self.conv = create_conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                  dilation=dilation, groups=groups, padding=padding)
        self.norm = norm_layer(out_channels)
        self.act = act_layer() if act_layer is not None else nn.Identity()
        self.has_act = act_layer is not None
        self.memory_efficient = bool(memory_efficient)

    @torch.jit.unused
    def fuses_norm_act(self) -> bool:
        """Whether this call runs norm + activation fused (see ``memory_efficient``)."""
        return self.memory_efficient and self.has_act and fuses_norm_act(self.norm, self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(self.conv(x))

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Norm and activation of an already convolved ``x``."""
        if not torch.jit.is_scripting():  # the fused path saves memory in training only
            if self.fuses_norm_act():
                return norm_act(x, self.norm, self.act)
        return self.act(self.norm(x))
