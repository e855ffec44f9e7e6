"""Helpers for comparing randomly initialised networks in eval mode.

A random-init EfficientNet in eval mode normalises with BN's initial statistics (mean 0, var 1),
so its deep taps shrink to 1e-8..1e-13: an absolute tolerance then passes for any output at
all. :func:`calibrate_bn` gives every BN layer statistics measured on a batch, which keeps
eval-mode activations of order one, and :func:`assert_close_relative` compares tensors by their
relative error, so that a small tensor is not trivially "close".
"""
from __future__ import annotations

from typing import List, Sequence, Union

import torch
import torch.nn as nn

__all__ = ['calibrate_bn', 'assert_close_relative', 'assert_each_tensor_matters', 'relative_error',
           'randomise_affine', 'copy_state_in_order', 'n_params']

Tensors = Union[torch.Tensor, Sequence[torch.Tensor]]


def _batch_norms(model: nn.Module) -> List[nn.modules.batchnorm._BatchNorm]:
    """BN layers of ``model`` that keep running statistics (frozen BN and GN have none to set)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def calibrate_bn(model: nn.Module, batch: torch.Tensor, steps: int = 2) -> nn.Module:
    """Set every BN's running statistics to those of ``batch``; return ``model`` in eval mode.

    The statistics are reset, then ``steps`` forward passes run with BN in training mode and
    momentum ``None`` (a cumulative average over the passes, so the order of passes does not
    matter). Only the BN layers train: dropout and drop path stay in eval mode, so the passes
    are deterministic and the statistics are those of the network that eval mode runs. Each
    BN's momentum is restored afterwards.
    """
    if steps < 1:
        raise ValueError(f'steps must be at least 1, got {steps!r}')
    norms = _batch_norms(model)
    momenta = [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    try:
        for _ in range(steps):
            model(batch)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
    return model.eval()


@torch.no_grad()
def randomise_affine(model: nn.Module, seed: int) -> nn.Module:
    """Draw BN affine parameters (weight U(0.5, 1.5), bias N(0, 0.2)) and conv/linear biases
    (N(0, 0.2)), so that no tensor keeps its default and a tensor loaded into the wrong place
    shows in the outputs. Returns ``model``."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            module.weight.uniform_(0.5, 1.5, generator=gen)
            module.bias.normal_(0.0, 0.2, generator=gen)
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.normal_(0.0, 0.2, generator=gen)
    return model


def copy_state_in_order(src: nn.Module, dst: nn.Module) -> None:
    """Load ``src``'s state dict into ``dst`` tensor by tensor, in registration order.

    For two implementations of the same layer whose names differ: an oracle independent of the
    library's own key maps. Fails unless both hold tensors of the same shapes in the same order.
    """
    src_state, dst_state = src.state_dict(), dst.state_dict()
    src_shapes = [tuple(v.shape) for v in src_state.values()]
    dst_shapes = [tuple(v.shape) for v in dst_state.values()]
    assert src_shapes == dst_shapes, 'the two modules hold different tensors'
    dst.load_state_dict(dict(zip(dst_state, src_state.values())))


def n_params(module: nn.Module) -> int:
    """Parameter elements of ``module`` (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


def _as_list(tensors: Tensors) -> List[torch.Tensor]:
    return [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``||actual - expected|| / ||expected||`` (Frobenius norms, in float64).

    Zero when both are zero; infinite when only ``expected`` is.
    """
    actual, expected = actual.detach().double(), expected.detach().double()
    difference = torch.linalg.vector_norm(actual - expected).item()
    scale = torch.linalg.vector_norm(expected).item()
    if scale == 0.0:
        return 0.0 if difference == 0.0 else float('inf')
    return difference / scale


def assert_close_relative(actual: Tensors, expected: Tensors, rtol: float = 1e-5) -> None:
    """Assert that each tensor of ``actual`` is within relative error ``rtol`` of ``expected``.

    ``actual`` and ``expected`` are tensors or equally long sequences of tensors (e.g. the taps
    of two backbones). Shapes must agree; the message names the first failing tensor's index,
    its relative error and both norms.
    """
    actual_list, expected_list = _as_list(actual), _as_list(expected)
    assert len(actual_list) == len(expected_list), \
        f'{len(actual_list)} tensors given, {len(expected_list)} expected'
    for index, (got, want) in enumerate(zip(actual_list, expected_list)):
        assert got.shape == want.shape, \
            f'tensor {index}: shape {tuple(got.shape)}, expected {tuple(want.shape)}'
        ratio = relative_error(got, want)
        assert ratio <= rtol, (
            f'tensor {index}: relative error {ratio:.3g} > {rtol:g} '
            f'(||actual|| = {torch.linalg.vector_norm(got.double()).item():.3g}, '
            f'||expected|| = {torch.linalg.vector_norm(want.double()).item():.3g})')


def assert_each_tensor_matters(actual: Tensors, expected: Tensors, rtol: float = 1e-5) -> None:
    """Assert ``actual`` matches ``expected`` and that zeroing any one tensor of ``actual`` breaks
    the match: the comparison would notice a broken deep layer (its tensors are not vanishing)."""
    actual_list = _as_list(actual)
    assert_close_relative(actual_list, expected, rtol)
    for index in range(len(actual_list)):
        broken = list(actual_list)
        broken[index] = torch.zeros_like(broken[index])
        try:
            assert_close_relative(broken, expected, rtol)
        except AssertionError:
            continue
        raise AssertionError(f'tensor {index} could be zero and still compare equal: calibrate '
                             f'the network (calibrate_bn) so that its activations do not vanish')
