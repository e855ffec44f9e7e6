"""The memory-efficient functions as ``torch.library`` custom operators.

``torch.compile`` traces through Python ``autograd.Function``\\ s and would save what the traced
graph needs, losing the saving; a custom operator with a registered autograd formula stays one
opaque node in both the forward and the backward graph, so a compiled model saves exactly what the
formula saves (the norm input and two per-channel vectors) and runs the recompute of the backward
formula. Each forward and each backward is its own operator, so neither graph breaks.

The operators are functional, as ``torch.library.register_autograd`` requires: the BN forward
returns the updated running statistics (computed by ``native_batch_norm`` on copies, so they are
bit-identical to ``nn.BatchNorm2d``'s) and the caller copies them into the buffers.

Covered: ``nn.BatchNorm2d`` (batch or running statistics) and torchvision's ``FrozenBatchNorm2d``
with the activations in :data:`FUSED_ACTIVATIONS`. Other norms and activations keep the Python
autograd functions of :mod:`.memory_efficient` in eager mode and the plain path when compiled.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import FrozenBatchNorm2d

from .depthwise import conv2d_backward

__all__ = ['FUSED_ACTIVATIONS', 'activation_name', 'supports_fused_op', 'norm_act_op',
           'norm_act_conv_op', 'gate_project_op']

#: activation module type -> the name the operators take
FUSED_ACTIVATIONS = {nn.SiLU: 'silu', nn.ReLU: 'relu', nn.ReLU6: 'relu6',
                     nn.Hardswish: 'hardswish', nn.Identity: 'identity'}
_CHANNELS = (0, 2, 3)  # the dimensions BN reduces over


def activation_name(act: nn.Module) -> Optional[str]:
    """The operators' name for ``act``, or None when they do not implement it."""
    return FUSED_ACTIVATIONS.get(type(act))


def supports_fused_op(norm: nn.Module, act: nn.Module) -> bool:
    """Whether :func:`norm_act_op` computes ``act(norm(x))`` for this norm and activation."""
    if activation_name(act) is None:
        return False
    if type(norm) is FrozenBatchNorm2d:
        return True
    return (type(norm) is nn.BatchNorm2d and norm.affine
            and (norm.track_running_stats or norm.training))


def _activate(y: Tensor, act: str) -> Tensor:
    if act == 'silu':
        return F.silu(y)
    if act == 'relu':
        return F.relu(y)
    if act == 'relu6':
        return F.hardtanh(y, 0.0, 6.0)
    if act == 'hardswish':
        return F.hardswish(y)
    return y


def _activation_grad(grad: Tensor, y: Tensor, act: str) -> Tensor:
    if act == 'silu':
        return torch.ops.aten.silu_backward(grad, y)
    if act == 'relu':
        return torch.ops.aten.threshold_backward(grad, y, 0)
    if act == 'relu6':
        return torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)
    if act == 'hardswish':
        return torch.ops.aten.hardswish_backward(grad, y)
    return grad


def _bn_forward(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Optional[Tensor],
                running_var: Optional[Tensor], batch_stats: bool, momentum: float, eps: float
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(normalised, mean, invstd, new running mean, new running var); without running
    statistics (or with running statistics in use) the last two are empty."""
    if batch_stats:
        new_mean = None if running_mean is None else running_mean.clone()
        new_var = None if running_var is None else running_var.clone()
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, new_mean, new_var, True,
                                                    momentum, eps)
        return (out, mean, invstd, x.new_empty(0) if new_mean is None else new_mean,
                x.new_empty(0) if new_var is None else new_var)
    mean = running_mean.float().clone()
    invstd = torch.rsqrt(running_var.float() + eps)
    out = _affine(x, weight, bias, mean, invstd)
    return out, mean, invstd, x.new_empty(0), x.new_empty(0)  # outputs may not alias


def _affine(x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor) -> Tensor:
    """``(x - mean) * invstd * weight + bias`` as one fused multiply-add, in ``x``'s dtype."""
    scale = invstd * weight
    shift = bias - mean * scale
    return torch.addcmul(shift[None, :, None, None].to(x.dtype), x,
                         scale[None, :, None, None].to(x.dtype))


def _bn_backward(grad_y: Tensor, x: Tensor, weight: Tensor, mean: Tensor, invstd: Tensor,
                 batch_stats: bool, eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Gradients of (x, weight, bias) from the gradient of the normalised tensor."""
    if batch_stats:
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_y, x, weight, None, None, mean, invstd, True, eps, [True, True, True])
        return grad_x, grad_weight, grad_bias
    shape = (1, -1, 1, 1)
    grad_bias = grad_y.sum(_CHANNELS)
    grad_weight = (grad_y * (x - mean.view(shape).to(x.dtype))).sum(_CHANNELS) * invstd
    grad_x = grad_y * (invstd * weight).view(shape).to(x.dtype)
    return grad_x, grad_weight.to(weight.dtype), grad_bias.to(weight.dtype)


def _norm_act_grads(grad_out: Tensor, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor,
                    invstd: Tensor, batch_stats: bool, eps: float, act: str
                    ) -> Tuple[Tensor, Tensor, Tensor]:
    normalised = _affine(x, weight, bias, mean, invstd)  # the recompute
    return _bn_backward(_activation_grad(grad_out, normalised, act), x, weight, mean, invstd,
                        batch_stats, eps)


# --- act(norm(x)) -------------------------------------------------------------------------------

@torch.library.custom_op('effnet_backbones::norm_act', mutates_args=())
def _norm_act(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Optional[Tensor],
              running_var: Optional[Tensor], batch_stats: bool, momentum: float, eps: float,
              act: str) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    out, *rest = _bn_forward(x, weight, bias, running_mean, running_var, batch_stats, momentum,
                             eps)
    return (_activate(out, act), *rest)


@_norm_act.register_fake
def _(x, weight, bias, running_mean, running_var, batch_stats, momentum, eps, act):
    return _fake_stats(x, running_mean, batch_stats, x.new_empty(x.shape))


def _fake_stats(x: Tensor, running_mean: Optional[Tensor], batch_stats: bool, out: Tensor):
    channels = x.shape[1]
    running = channels if batch_stats and running_mean is not None else 0
    stats = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return (out, x.new_empty(channels, dtype=stats), x.new_empty(channels, dtype=stats),
            x.new_empty(running), x.new_empty(running))


@torch.library.custom_op('effnet_backbones::norm_act_backward', mutates_args=())
def _norm_act_backward(grad_out: Tensor, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor,
                       invstd: Tensor, batch_stats: bool, eps: float, act: str
                       ) -> Tuple[Tensor, Tensor, Tensor]:
    return _norm_act_grads(grad_out, x, weight, bias, mean, invstd, batch_stats, eps, act)


@_norm_act_backward.register_fake
def _(grad_out, x, weight, bias, mean, invstd, batch_stats, eps, act):
    return x.new_empty(x.shape), weight.new_empty(weight.shape), weight.new_empty(weight.shape)


def _setup_norm_act(ctx, inputs, output) -> None:
    x, weight, bias, _, _, batch_stats, _, eps, act = inputs
    ctx.save_for_backward(x, weight, bias, output[1], output[2])
    ctx.batch_stats, ctx.eps, ctx.act = batch_stats, eps, act


def _backward_norm_act(ctx, grad_out, *_unused):
    x, weight, bias, mean, invstd = ctx.saved_tensors
    grads = _norm_act_backward(grad_out, x, weight, bias, mean, invstd, ctx.batch_stats,
                               ctx.eps, ctx.act)
    return (*grads, None, None, None, None, None, None)


torch.library.register_autograd('effnet_backbones::norm_act', _backward_norm_act,
                                setup_context=_setup_norm_act)


# --- conv(act(norm(x))) -------------------------------------------------------------------------

def _pad_and_conv(activated: Tensor, conv_weight: Tensor, stride: List[int], padding: List[int],
                  pad: List[int], dilation: List[int], groups: int) -> Tensor:
    if pad:
        activated = F.pad(activated, pad)
    return F.conv2d(activated, conv_weight, None, stride, padding, dilation, groups)


@torch.library.custom_op('effnet_backbones::norm_act_conv', mutates_args=())
def _norm_act_conv(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Optional[Tensor],
                   running_var: Optional[Tensor], conv_weight: Tensor, stride: List[int],
                   padding: List[int], pad: List[int], dilation: List[int], groups: int,
                   batch_stats: bool, momentum: float, eps: float, act: str
                   ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    out, *rest = _bn_forward(x, weight, bias, running_mean, running_var, batch_stats, momentum,
                             eps)
    return (_pad_and_conv(_activate(out, act), conv_weight, stride, padding, pad, dilation,
                          groups), *rest)


@_norm_act_conv.register_fake
def _(x, weight, bias, running_mean, running_var, conv_weight, stride, padding, pad, dilation,
      groups, batch_stats, momentum, eps, act):
    shape = x.shape if not pad else (x.shape[0], x.shape[1], x.shape[2] + pad[2] + pad[3],
                                     x.shape[3] + pad[0] + pad[1])
    sides = [(size + 2 * padding[i] - dilation[i] * (conv_weight.shape[2 + i] - 1) - 1)
             // stride[i] + 1 for i, size in enumerate(shape[2:])]
    out = x.new_empty((x.shape[0], conv_weight.shape[0], *sides))
    return _fake_stats(x, running_mean, batch_stats, out)


@torch.library.custom_op('effnet_backbones::norm_act_conv_backward', mutates_args=())
def _norm_act_conv_backward(grad_out: Tensor, x: Tensor, weight: Tensor, bias: Tensor,
                            mean: Tensor, invstd: Tensor, conv_weight: Tensor, stride: List[int],
                            padding: List[int], pad: List[int], dilation: List[int], groups: int,
                            batch_stats: bool, eps: float, act: str
                            ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    normalised = _affine(x, weight, bias, mean, invstd)
    activated = _activate(normalised, act)
    padded = F.pad(activated, pad) if pad else activated
    dtype = grad_out.dtype  # the autocast dtype the forward convolution ran in, if any
    grad_padded, grad_conv = conv2d_backward(grad_out, padded.to(dtype), conv_weight.to(dtype),
                                             stride, padding, dilation, groups, (True, True))
    del padded
    grad_padded, grad_conv = grad_padded.to(normalised.dtype), grad_conv.to(conv_weight.dtype)
    if pad:  # the padding's gradient is dropped
        height, width = activated.shape[2:]
        grad_padded = grad_padded[:, :, pad[2]:pad[2] + height, pad[0]:pad[0] + width]
    grad_normalised = _activation_grad(grad_padded, normalised, act)
    return (*_bn_backward(grad_normalised, x, weight, mean, invstd, batch_stats, eps), grad_conv)


@_norm_act_conv_backward.register_fake
def _(grad_out, x, weight, bias, mean, invstd, conv_weight, stride, padding, pad, dilation,
      groups, batch_stats, eps, act):
    return (x.new_empty(x.shape), weight.new_empty(weight.shape), weight.new_empty(weight.shape),
            conv_weight.new_empty(conv_weight.shape))


def _setup_norm_act_conv(ctx, inputs, output) -> None:
    (x, weight, bias, _, _, conv_weight, stride, padding, pad, dilation, groups, batch_stats, _,
     eps, act) = inputs
    ctx.save_for_backward(x, weight, bias, output[1], output[2], conv_weight)
    ctx.conv_args = (stride, padding, pad, dilation, groups)
    ctx.batch_stats, ctx.eps, ctx.act = batch_stats, eps, act


def _backward_norm_act_conv(ctx, grad_out, *_unused):
    x, weight, bias, mean, invstd, conv_weight = ctx.saved_tensors
    grad_x, grad_weight, grad_bias, grad_conv = _norm_act_conv_backward(
        grad_out, x, weight, bias, mean, invstd, conv_weight, *ctx.conv_args, ctx.batch_stats,
        ctx.eps, ctx.act)
    return (grad_x, grad_weight, grad_bias, None, None, grad_conv, *([None] * 9))


torch.library.register_autograd('effnet_backbones::norm_act_conv', _backward_norm_act_conv,
                                setup_context=_setup_norm_act_conv)


# --- conv1x1(x * gate) --------------------------------------------------------------------------

@torch.library.custom_op('effnet_backbones::gate_project', mutates_args=())
def _gate_project(x: Tensor, gate: Tensor, weight: Tensor) -> Tensor:
    return F.conv2d(x * gate, weight)


@_gate_project.register_fake
def _(x, gate, weight):
    return x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))


@torch.library.custom_op('effnet_backbones::gate_project_backward', mutates_args=())
def _gate_project_backward(grad_out: Tensor, x: Tensor, gate: Tensor, weight: Tensor
                           ) -> Tuple[Tensor, Tensor, Tensor]:
    # under autocast the forward convolution ran in the autocast dtype, which the gradient
    # carries; backward runs without autocast, so the operands are cast to it (no-ops otherwise)
    dtype = grad_out.dtype
    gated = (x * gate).to(dtype)  # element-wise; the convolution itself is not re-run
    grad_gated, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad_out, gated, weight.to(dtype), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
        [True, True, False])
    del gated
    return ((grad_gated * gate).to(x.dtype),
            (grad_gated * x).sum((2, 3), keepdim=True).to(gate.dtype), grad_weight.to(weight.dtype))


@_gate_project_backward.register_fake
def _(grad_out, x, gate, weight):
    return x.new_empty(x.shape), gate.new_empty(gate.shape), weight.new_empty(weight.shape)


def _setup_gate_project(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward_gate_project(ctx, grad_out):
    return _gate_project_backward(grad_out, *ctx.saved_tensors)


torch.library.register_autograd('effnet_backbones::gate_project', _backward_gate_project,
                                setup_context=_setup_gate_project)


# --- the module-level entry points --------------------------------------------------------------

def _norm_args(norm: nn.Module) -> tuple:
    """(weight, bias, running mean, running var, batch statistics?, momentum, eps) of a norm
    that passes :func:`supports_fused_op`."""
    if type(norm) is FrozenBatchNorm2d:
        return (norm.weight, norm.bias, norm.running_mean, norm.running_var, False, 0.0,
                float(norm.eps))
    batch_stats = norm.training or norm.running_mean is None
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(norm.num_batches_tracked)
    return (norm.weight, norm.bias, norm.running_mean, norm.running_var, batch_stats,
            float(momentum), float(norm.eps))


def _store_running(norm: nn.Module, new_mean: Tensor, new_var: Tensor) -> None:
    if new_mean.numel():
        with torch.no_grad():
            norm.running_mean.copy_(new_mean)
            norm.running_var.copy_(new_var)


def norm_act_op(x: Tensor, norm: nn.Module, act: nn.Module) -> Tensor:
    """``act(norm(x))`` through the custom operator (eager or compiled)."""
    out, _, _, new_mean, new_var = _norm_act(x, *_norm_args(norm), activation_name(act))
    _store_running(norm, new_mean, new_var)
    return out


def norm_act_conv_op(x: Tensor, norm: nn.Module, act: nn.Module, conv: nn.Conv2d) -> Tensor:
    """``conv(act(norm(x)))`` for a bias-free conv from ``create_conv2d`` (``Conv2dSame``'s
    run-time padding included) through the custom operator."""
    pad_amounts = getattr(conv, 'pad_amounts', None)  # Conv2dSame: padding from the input size
    pad: List[int] = list(pad_amounts(*x.shape[-2:])) if pad_amounts is not None else []
    padding = [0, 0] if pad_amounts is not None else list(conv.padding)
    (weight, bias, running_mean, running_var, batch_stats, momentum, eps) = _norm_args(norm)
    out, _, _, new_mean, new_var = _norm_act_conv(
        x, weight, bias, running_mean, running_var, conv.weight, list(conv.stride), padding, pad,
        list(conv.dilation), conv.groups, batch_stats, momentum, eps, activation_name(act))
    _store_running(norm, new_mean, new_var)
    return out


def gate_project_op(x: Tensor, gate: Tensor, weight: Tensor) -> Tensor:
    """``F.conv2d(x * gate, weight)`` (bias-free 1x1) through the custom operator."""
    return _gate_project(x, gate, weight)
