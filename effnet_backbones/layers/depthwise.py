"""Depthwise convolution with a faster weight gradient on CPU.

PyTorch's CPU backward of a depthwise convolution computes the weight gradient slowly for kernels
of 5 x 5 and up: at B0's 256 px, batch 8, one 5 x 5 layer's weight gradient takes 24-38 ms in the
default memory format against 2-3 ms for the forward convolution that produced it, and the
5 x 5 layers' weight gradients cost more than all of B0's other depthwise work together. The
weight gradient is a per-channel cross-correlation of the (padded) input with the output
gradient, which is itself a grouped convolution: with the batch folded into the channels
(``N * C`` groups) the output gradient is the kernel, the block stride its dilation and the
block dilation its stride. That convolution runs on the fast forward kernels, and a sum over the
batch finishes it (docs/benchmarks.md, "Depthwise weight gradients").

``create_conv2d`` builds depthwise convolutions as :class:`~effnet_backbones.layers.conv.DepthwiseConv2d`
(or its TF-'same' twin), whose forward takes this path in training; they are ``nn.Conv2d``
modules with the same parameters, so state dicts, forward hooks and FLOP counters see no
difference.

The input gradient keeps PyTorch's kernel (it is as fast as the forward). Only CPU tensors and
kernels of at least :data:`FAST_MIN_KERNEL` take the new path, where it was measured faster; 3 x 3
kernels and every GPU keep PyTorch's backward. The gradients equal PyTorch's up to float
summation order (tested: 1e-12 relative in float64, 1e-5 in float32).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ['FAST_MIN_KERNEL', 'set_fast_depthwise', 'fast_depthwise_enabled', 'fast_depthwise',
           'uses_fast_weight_grad', 'depthwise_weight_grad', 'conv2d_backward',
           'depthwise_conv2d', 'takes_fast_path', 'exporting']

#: the smallest kernel side whose weight gradient takes the grouped-convolution path (3 x 3 weight
#: gradients were as fast or faster in PyTorch's kernel, measured at B0/B4 shapes)
FAST_MIN_KERNEL = 5

# EFFNET_FAST_DEPTHWISE=0 turns the path off for a whole process (benchmark comparisons)
_ENABLED = os.environ.get('EFFNET_FAST_DEPTHWISE', '1').strip().lower() not in ('0', 'false', 'no')


def set_fast_depthwise(enabled: bool) -> bool:
    """Turn the fast depthwise weight gradient on or off for this process; returns the old value."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(enabled)
    return previous


def fast_depthwise_enabled() -> bool:
    """Whether the fast depthwise weight gradient is on (the default)."""
    return _ENABLED


@contextmanager
def fast_depthwise(enabled: bool) -> Iterator[None]:
    """Context manager: the fast depthwise weight gradient on or off inside the block."""
    previous = set_fast_depthwise(enabled)
    try:
        yield
    finally:
        set_fast_depthwise(previous)


def uses_fast_weight_grad(x: Tensor, weight: Tensor, groups: int) -> bool:
    """Whether the weight gradient of ``conv2d(x, weight, groups=groups)`` takes the fast path:
    on, a CPU tensor, a depthwise weight (one input channel per group, as many groups as output
    channels) and a kernel of at least :data:`FAST_MIN_KERNEL` on either side."""
    return (_ENABLED and x.device.type == 'cpu' and weight.dim() == 4 and weight.shape[1] == 1
            and groups == weight.shape[0] and groups > 1
            and max(weight.shape[2], weight.shape[3]) >= FAST_MIN_KERNEL)


def depthwise_weight_grad(x: Tensor, grad_out: Tensor, kernel_size: Sequence[int],
                          stride: Sequence[int], padding: Sequence[int],
                          dilation: Sequence[int]) -> Tensor:
    """The weight gradient of a bias-free depthwise ``conv2d`` (one input channel per group).

    Args:
        x: the convolution's input (N, C, H, W).
        grad_out: the gradient of its output (N, C, Ho, Wo).
        kernel_size, stride, padding, dilation: the convolution's, as pairs.

    Returns:
        The gradient of the (C, 1, kh, kw) weight, in ``x``'s dtype.
    """
    batch, channels = x.shape[:2]
    out_h, out_w = grad_out.shape[-2:]
    # the batch folded into the channels: one group per (sample, channel)
    folded_x = x.contiguous().view(1, batch * channels, x.shape[2], x.shape[3])
    folded_grad = grad_out.to(x.dtype).contiguous().view(batch * channels, 1, out_h, out_w)
    # weight gradient [c, i, j] = sum over (n, h, w) of x_pad[n, c, h*s + i*d, w*s + j*d] *
    # grad[n, c, h, w]: the output gradient slides as a kernel dilated by the stride, moving by
    # the dilation
    correlation = F.conv2d(folded_x, folded_grad, None, stride=tuple(dilation),
                           padding=tuple(padding), dilation=tuple(stride),
                           groups=batch * channels)
    correlation = correlation[..., :kernel_size[0], :kernel_size[1]]
    per_sample = correlation.reshape(batch, channels, kernel_size[0], kernel_size[1])
    # half-precision sums over the batch accumulate in float32
    accumulate = torch.promote_types(x.dtype, torch.float32)
    return per_sample.sum(0, dtype=accumulate).to(x.dtype).unsqueeze(1)


def conv2d_backward(grad_out: Tensor, x: Tensor, weight: Tensor, stride: List[int],
                    padding: List[int], dilation: List[int], groups: int,
                    output_mask: Tuple[bool, bool]) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """(input gradient, weight gradient) of a bias-free ``conv2d``, as
    ``aten.convolution_backward`` gives them, with the depthwise weight gradient on the fast path
    where :func:`uses_fast_weight_grad` says so. Entries of ``output_mask`` that are False give None.
    """
    need_input, need_weight = output_mask
    fast = need_weight and uses_fast_weight_grad(x, weight, groups)
    grad_input = grad_weight = None
    if need_input or (need_weight and not fast):
        grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad_out, x, weight, None, stride, padding, dilation, False, [0, 0], groups,
            [need_input, need_weight and not fast, False])
    if fast:
        grad_weight = depthwise_weight_grad(x, grad_out, weight.shape[2:], stride, padding,
                                            dilation)
    return grad_input, grad_weight


class _DepthwiseConv2d(torch.autograd.Function):
    """``conv2d`` of a depthwise weight whose backward uses :func:`conv2d_backward`."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stride: List[int], padding: List[int],
                dilation: List[int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conv_args = (stride, padding, dilation)
        return F.conv2d(x, weight, None, stride, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conv_args
        # under autocast the forward ran in the gradient's dtype: the operands follow it
        dtype = grad_out.dtype
        grad_x, grad_weight = conv2d_backward(
            grad_out, x.to(dtype), weight.to(dtype), stride, padding, dilation, weight.shape[0],
            (ctx.needs_input_grad[0], ctx.needs_input_grad[1]))
        return (None if grad_x is None else grad_x.to(x.dtype),
                None if grad_weight is None else grad_weight.to(weight.dtype), None, None, None)


def depthwise_conv2d(x: Tensor, weight: Tensor, stride: Sequence[int] = (1, 1),
                     padding: Sequence[int] = (0, 0), dilation: Sequence[int] = (1, 1)) -> Tensor:
    """Bias-free depthwise ``F.conv2d`` (``groups`` = channels) with the fast weight gradient."""
    return _DepthwiseConv2d.apply(x, weight, list(stride), list(padding), list(dilation))


def exporting() -> bool:
    """Whether an exporter traces (TorchScript tracing, ONNX, torch.export): exporters get the
    plain convolution."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return True
    is_exporting = getattr(torch.compiler, 'is_exporting', None)
    return bool(is_exporting is not None and is_exporting())


def takes_fast_path(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether ``conv(x)`` should run as :func:`depthwise_conv2d`: gradients flow, the weight
    gradient takes the fast path (:func:`uses_fast_weight_grad`), a bias-free zero-padded conv,
    and no exporter is tracing."""
    return (torch.is_grad_enabled() and conv.bias is None and conv.padding_mode == 'zeros'
            and not isinstance(conv.padding, str)
            and uses_fast_weight_grad(x, conv.weight, conv.groups)
            and (x.requires_grad or conv.weight.requires_grad) and not exporting())
