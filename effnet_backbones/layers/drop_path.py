"""Stochastic depth (drop path) applied to a residual branch."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ['DropPath']


class DropPath(nn.Module):
    """Zero a whole residual branch per sample with probability ``p`` in training, scaling survivors."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise ValueError(f'drop path probability must be in [0, 1], got {p!r}')
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty([x.shape[0]] + [1] * (x.dim() - 1)).bernoulli_(keep)
        if keep > 0.0:  # p = 1 drops every branch; dividing the zero mask by 0 would give NaN
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f'p={self.p:.4f}'
