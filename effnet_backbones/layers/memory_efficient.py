"""Autograd functions that save fewer activations than the plain layer-by-layer graph.

Neither recomputes a convolution: the backward passes recompute only element-wise work (a norm
and an activation, or a gate product), which is cheap next to the memory it saves.

Plain MBConv training keeps seven tensors of the expanded width per block (for expand and
depthwise: the norm input, the activation input and its output; plus the gated SE product).
With these functions it keeps three: the two norm inputs and the depthwise activation output.

A separate memory-efficient Swish is not needed: PyTorch's native SiLU already saves only its
input; the tensor worth dropping is the norm output that input is, which ``norm_act`` removes.

BatchNorm (batch or running statistics) and frozen BN with the common activations run as the
``torch.library`` operators of :mod:`.fused_ops`, which ``torch.compile`` keeps as they are, so
compiled training saves the same tensors; other norms (GroupNorm) and activations run as the
Python autograd functions below in eager mode and take the plain path when compiled.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import FrozenBatchNorm2d

from .fused_ops import gate_project_op, norm_act_conv_op, norm_act_op, supports_fused_op

__all__ = ['supports_fused_norm_act', 'fuses_norm_act', 'norm_act', 'norm_act_conv',
           'gate_project']


def supports_fused_norm_act(norm: nn.Module) -> bool:
    """Whether :func:`norm_act` can recompute ``norm`` exactly from its input alone.

    SyncBatchNorm is excluded: recomputing it would need another all-reduce in backward.
    """
    return type(norm) in (nn.BatchNorm2d, FrozenBatchNorm2d) or isinstance(norm, nn.GroupNorm)


def fuses_norm_act(norm: nn.Module, act: nn.Module) -> bool:
    """Whether :func:`norm_act` runs fused in this call: with gradients, for a norm it can
    recompute, and under ``torch.compile`` only where a custom operator covers the pair."""
    if not torch.is_grad_enabled():
        return False
    if torch.compiler.is_compiling():
        return supports_fused_op(norm, act)
    return supports_fused_norm_act(norm)


def _recompute_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(norm, nn.BatchNorm2d):  # eval mode: running statistics
        return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                            False, 0.0, norm.eps)
    return norm(x)  # stateless norms (GroupNorm, frozen BN)


def _forward_norm(norm: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[tuple]]:
    """``norm(x)``; for BatchNorm on batch statistics also the batch's (mean, invstd).

    Keeping the two per-channel vectors lets backward skip recomputing the statistics (two passes
    over the tensor). Running statistics are updated exactly as ``nn.BatchNorm2d`` does.
    """
    if type(norm) is not nn.BatchNorm2d or not (norm.training or norm.running_mean is None):
        return norm(x), None
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(norm.num_batches_tracked)
    out, mean, invstd = torch.native_batch_norm(
        x, norm.weight, norm.bias, norm.running_mean if norm.track_running_stats else None,
        norm.running_var if norm.track_running_stats else None, True, momentum, norm.eps)
    return out, (mean, invstd)


def _rebuild(norm: nn.Module, act: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
             stats: Optional[tuple], need_x: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(leaf, act(norm(x)))`` recomputed with a graph from ``leaf``: the normalised tensor when
    batch statistics were kept (one fused element-wise op), else ``x`` itself."""
    if stats is not None:
        mean, invstd = stats
        with torch.no_grad():
            scale = invstd if norm.weight is None else invstd * norm.weight
            shift = -mean * scale if norm.bias is None else norm.bias - mean * scale
            # in the input's dtype, as the forward BN produced it (bf16 under autocast)
            normalised = torch.addcmul(shift[None, :, None, None].to(x.dtype), x,
                                       scale[None, :, None, None].to(x.dtype))
        leaf = normalised.requires_grad_()
        return leaf, act(leaf)
    leaf = x.detach().requires_grad_(need_x)
    return leaf, act(_recompute_norm(norm, leaf))


def _input_grads(ctx, x: torch.Tensor, stats: Optional[tuple], leaf: torch.Tensor,
                 out: torch.Tensor, grad_out: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
    """Gradients of (x, norm weight, norm bias) from the gradient of ``out``."""
    norm = ctx.norm
    need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
    if stats is not None:
        (grad_leaf,) = torch.autograd.grad(out, leaf, grad_out)
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_leaf, x, norm.weight, norm.running_mean, norm.running_var, stats[0], stats[1],
            True, norm.eps, [need_x, need_weight, need_bias])
        return (grad_x if need_x else None, grad_weight if need_weight else None,
                grad_bias if need_bias else None)
    params = [p for p, need in ((norm.weight, need_weight), (norm.bias, need_bias)) if need]
    inputs = ([leaf] if need_x else []) + params
    grads = list(torch.autograd.grad(out, inputs, grad_out)) if inputs else []
    grad_x = grads.pop(0) if need_x else None
    grad_weight = grads.pop(0) if need_weight else None
    grad_bias = grads.pop(0) if need_bias else None
    return grad_x, grad_weight, grad_bias


def _save(ctx, x: torch.Tensor, stats: Optional[tuple], *extra: torch.Tensor) -> None:
    ctx.has_stats = stats is not None
    ctx.save_for_backward(x, *(stats or ()), *extra)


def _saved(ctx) -> Tuple[torch.Tensor, Optional[tuple], Tuple[torch.Tensor, ...]]:
    x, *rest = ctx.saved_tensors
    if ctx.has_stats:
        return x, (rest[0], rest[1]), tuple(rest[2:])
    return x, None, tuple(rest)


class _NormAct(torch.autograd.Function):
    """``act(norm(x))`` saving only ``x`` (and BN's per-channel batch statistics); the element-wise
    norm and activation are recomputed in backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                norm: nn.Module, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.norm, ctx.act = norm, act
        with torch.no_grad():
            normalised, stats = _forward_norm(norm, x)
            _save(ctx, x, stats)
            return act(normalised)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, stats, _ = _saved(ctx)
        with torch.enable_grad():
            leaf, out = _rebuild(ctx.norm, ctx.act, x, stats, ctx.needs_input_grad[0])
            grads = _input_grads(ctx, x, stats, leaf, out, grad_out)
        return (*grads, None, None)


def norm_act(x: torch.Tensor, norm: nn.Module, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Memory-efficient ``act(norm(x))`` for training; ``norm`` must pass :func:`supports_fused_norm_act`."""
    if supports_fused_op(norm, act):
        return norm_act_op(x, norm, act)
    weight = norm.weight if isinstance(norm.weight, nn.Parameter) else None
    bias = norm.bias if isinstance(norm.bias, nn.Parameter) else None
    return _NormAct.apply(x, weight, bias, norm, act)


class _NormActConv(torch.autograd.Function):
    """``conv(act(norm(x)))`` saving only ``x``: the activation output the conv needs for its weight
    gradient is the one the norm/activation backward recomputes anyway."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                conv_weight: torch.Tensor, norm: nn.Module, act: Callable[[torch.Tensor], torch.Tensor],
                conv: nn.Conv2d) -> torch.Tensor:
        ctx.norm, ctx.act, ctx.conv = norm, act, conv
        with torch.no_grad():
            normalised, stats = _forward_norm(norm, x)
            _save(ctx, x, stats, conv_weight)
            return conv(act(normalised))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, stats, (conv_weight,) = _saved(ctx)
        conv = ctx.conv
        with torch.enable_grad():
            leaf, activated = _rebuild(ctx.norm, ctx.act, x, stats, ctx.needs_input_grad[0])
            pad = getattr(conv, 'pad', None)  # Conv2dSame pads at run time, nn.Conv2d inside
            if pad is not None:
                activated = pad(activated)
        padding = [0, 0] if pad is not None else list(conv.padding)
        need_conv = ctx.needs_input_grad[3]
        need_inputs = any(ctx.needs_input_grad[:3])
        grad_activated, grad_conv, _ = torch.ops.aten.convolution_backward(
            grad_out, activated.detach(), conv_weight, None, list(conv.stride), padding,
            list(conv.dilation), False, [0, 0], conv.groups, [need_inputs, need_conv, False])
        with torch.enable_grad():
            grads = (_input_grads(ctx, x, stats, leaf, activated, grad_activated) if need_inputs
                     else (None, None, None))
        return (*grads, grad_conv if need_conv else None, None, None, None)


def norm_act_conv(x: torch.Tensor, norm: nn.Module, act: Callable[[torch.Tensor], torch.Tensor],
                  conv: nn.Conv2d) -> torch.Tensor:
    """Memory-efficient ``conv(act(norm(x)))`` for a bias-free conv built by ``create_conv2d``."""
    if supports_fused_op(norm, act):
        return norm_act_conv_op(x, norm, act, conv)
    weight = norm.weight if isinstance(norm.weight, nn.Parameter) else None
    bias = norm.bias if isinstance(norm.bias, nn.Parameter) else None
    return _NormActConv.apply(x, weight, bias, conv.weight, norm, act, conv)


def gate_project(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Memory-efficient ``F.conv2d(x * gate, weight)`` for a bias-free 1x1 projection."""
    return gate_project_op(x, gate, weight)
