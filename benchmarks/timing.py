"""Timing a piece of work on a device: the best of several runs, synchronised on CUDA."""
from __future__ import annotations

import time
from typing import Callable

import torch

__all__ = ['best_seconds']


def best_seconds(run: Callable[[], object], device: torch.device, repeats: int = 5) -> float:
    """The shortest wall time of ``repeats`` calls of ``run`` after one untimed call (which warms
    the library up and touches the pages), the device synchronised around each call."""
    cuda = device.type == 'cuda'
    best = float('inf')
    for index in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        if index:
            best = min(best, time.perf_counter() - start)
    return best
