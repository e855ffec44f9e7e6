"""Stochastic depth (drop path) applied to a residual branch."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ['DropPath']


class DropPath(nn.Module):
    """Zero a whole residual branch per sample with probability ``p`` in training, scaling survivors."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'p={self.p:.4f}'
