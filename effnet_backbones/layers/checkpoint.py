"""Activation checkpointing that leaves BatchNorm running statistics exactly as without it."""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

__all__ = ['checkpoint_module']


def _stat_buffers(module: nn.Module) -> List[torch.Tensor]:
    return [buf for sub in module.modules()
            if isinstance(sub, nn.modules.batchnorm._NormBase) and sub.track_running_stats
            for buf in (sub.running_mean, sub.running_var, sub.num_batches_tracked)
            if buf is not None]


@contextlib.contextmanager
def _restore_running_stats(buffers: List[torch.Tensor]) -> Iterator[None]:
    # Recomputation runs the BNs in training mode a second time; without this their running
    # statistics would take two momentum steps per iteration instead of one.
    saved = [buf.clone() for buf in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in zip(buffers, saved):
                buf.copy_(value)


def _contexts(module: nn.Module) -> Tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    return contextlib.nullcontext(), _restore_running_stats(_stat_buffers(module))


def checkpoint_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``module(x)`` keeping only its input for backward, recomputing the rest."""
    if torch.compiler.is_compiling():
        # compiled recomputation never replays the running-statistics updates
        return checkpoint(module, x, use_reentrant=False)
    return checkpoint(module, x, use_reentrant=False, context_fn=lambda: _contexts(module))
