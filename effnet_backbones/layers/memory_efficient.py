"""Autograd functions that save fewer activations than the plain layer-by-layer graph.

Neither recomputes a convolution: the backward passes recompute only element-wise work (a norm
and an activation, or a gate product), which is cheap next to the memory it saves.

Plain MBConv training keeps seven tensors of the expanded width per block (for expand and
depthwise: the norm input, the activation input and its output; plus the gated SE product).
With these functions it keeps three: the two norm inputs and the depthwise activation output.

A separate memory-efficient Swish is not needed: PyTorch's native SiLU already saves only its
input; the tensor worth dropping is the norm output that input is, which ``norm_act`` removes.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import FrozenBatchNorm2d

__all__ = ['supports_fused_norm_act', 'norm_act', 'norm_act_conv', 'gate_project']


def supports_fused_norm_act(norm: nn.Module) -> bool:
    """Whether :func:`norm_act` can recompute ``norm`` exactly from its input alone.

    SyncBatchNorm is excluded: recomputing it would need another all-reduce in backward.
    """
    return type(norm) in (nn.BatchNorm2d, FrozenBatchNorm2d) or isinstance(norm, nn.GroupNorm)


def _recompute_norm(norm: nn.Module, x: torch.Tensor, batch_stats: bool) -> torch.Tensor:
    if isinstance(norm, nn.BatchNorm2d):
        if batch_stats:  # same normalisation as the forward pass, without touching running stats
            return F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)
        return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                            False, 0.0, norm.eps)
    return norm(x)  # stateless norms (GroupNorm, frozen BN)


class _NormAct(torch.autograd.Function):
    """``act(norm(x))`` saving only ``x``; the norm and activation are recomputed in backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                norm: nn.Module, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.norm, ctx.act = norm, act
        ctx.batch_stats = isinstance(norm, nn.BatchNorm2d) and (
            norm.training or norm.running_mean is None)
        ctx.save_for_backward(x)
        with torch.no_grad():
            return act(norm(x))  # the module call updates BN running statistics once, as usual

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        norm, act = ctx.norm, ctx.act
        params = [p for p in (norm.weight, norm.bias)
                  if isinstance(p, nn.Parameter) and p.requires_grad]
        with torch.enable_grad():
            x = x.detach().requires_grad_(ctx.needs_input_grad[0])
            out = act(_recompute_norm(norm, x, ctx.batch_stats))
            inputs = ([x] if ctx.needs_input_grad[0] else []) + params
            grads = list(torch.autograd.grad(out, inputs, grad_out)) if inputs else []
        grad_x = grads.pop(0) if ctx.needs_input_grad[0] else None
        grad_by_param = {id(p): g for p, g in zip(params, grads)}
        return (grad_x, grad_by_param.get(id(norm.weight)), grad_by_param.get(id(norm.bias)),
                None, None)


def norm_act(x: torch.Tensor, norm: nn.Module, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Memory-efficient ``act(norm(x))`` for training; ``norm`` must pass :func:`supports_fused_norm_act`."""
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
        ctx.batch_stats = isinstance(norm, nn.BatchNorm2d) and (
            norm.training or norm.running_mean is None)
        ctx.save_for_backward(x, conv_weight)
        with torch.no_grad():
            return conv(act(norm(x)))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, conv_weight = ctx.saved_tensors
        norm, act, conv = ctx.norm, ctx.act, ctx.conv
        params = [p for p in (norm.weight, norm.bias)
                  if isinstance(p, nn.Parameter) and p.requires_grad]
        need_x, need_conv = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
        with torch.enable_grad():
            x = x.detach().requires_grad_(need_x)
            activated = act(_recompute_norm(norm, x, ctx.batch_stats))
            pad = getattr(conv, 'pad', None)  # Conv2dSame pads at run time, nn.Conv2d inside
            if pad is not None:
                activated = pad(activated)
        padding = [0, 0] if pad is not None else list(conv.padding)
        grad_activated, grad_conv, _ = torch.ops.aten.convolution_backward(
            grad_out, activated.detach(), conv_weight, None, list(conv.stride), padding,
            list(conv.dilation), False, [0, 0], conv.groups,
            [need_x or bool(params), need_conv, False])
        inputs = ([x] if need_x else []) + params
        grads = list(torch.autograd.grad(activated, inputs, grad_activated)) if inputs else []
        grad_x = grads.pop(0) if need_x else None
        grad_by_param = {id(p): g for p, g in zip(params, grads)}
        return (grad_x, grad_by_param.get(id(norm.weight)), grad_by_param.get(id(norm.bias)),
                grad_conv if need_conv else None, None, None, None)


def norm_act_conv(x: torch.Tensor, norm: nn.Module, act: Callable[[torch.Tensor], torch.Tensor],
                  conv: nn.Conv2d) -> torch.Tensor:
    """Memory-efficient ``conv(act(norm(x)))`` for a bias-free conv built by ``create_conv2d``."""
    weight = norm.weight if isinstance(norm.weight, nn.Parameter) else None
    bias = norm.bias if isinstance(norm.bias, nn.Parameter) else None
    return _NormActConv.apply(x, weight, bias, conv.weight, norm, act, conv)


class _GateProject(torch.autograd.Function):
    """``conv1x1(x * gate)`` saving ``x`` and the (N, C, 1, 1) gate instead of the gated product."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, gate, weight)
        return F.conv2d(x * gate, weight)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        x, gate, weight = ctx.saved_tensors
        need_x, need_gate, need_weight = ctx.needs_input_grad
        gated = x * gate  # element-wise; the convolution itself is not re-run
        grad_gated, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad_out, gated, weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
            [need_x or need_gate, need_weight, False])
        del gated
        grad_x = grad_gated * gate if need_x else None
        grad_gate = (grad_gated * x).sum((2, 3), keepdim=True) if need_gate else None
        return grad_x, grad_gate, grad_weight if need_weight else None


def gate_project(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Memory-efficient ``F.conv2d(x * gate, weight)`` for a bias-free 1x1 projection."""
    return _GateProject.apply(x, gate, weight)
