"""Room in oneDNN's CPU kernel caches for a training step and its validation together.

On CPU, PyTorch runs convolutions through oneDNN, which builds (JIT-compiles) a *primitive* for
every layer, input shape and pass, and keeps the most recent 1024 of them. A training step
of a deep network needs one per convolution and pass, and a validation at other shapes
(windows batched 8 at a time, whole images) more. Past 1024 each training step evicts what
validation left and rebuilds what it evicted, after every validation, for the rest of the
run: the RetinaNet-B0 detection recipe's
600 training iterations took 94-98 s with sliced validation against 83-87 s with whole-tile
validation, and 83 s with sliced validation and a larger cache (docs/benchmarks.md, "Kernel
cache"). The U-Net recipe's runs (ours and a ResNet-34's) and the D0's did not change: theirs fit.

:func:`set_cpu_kernel_cache` raises the limit through the variables oneDNN and PyTorch read when
their caches are created, i.e. at the process's first convolution: call it before that (the
training tools do, in :func:`tasks.engine.runner.build_runner`). A primitive holds a small
compiled kernel, so the entries a run actually uses cost little (no measurable change in peak
RSS); variables a user set are kept.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict

__all__ = ['KERNEL_CACHE_VARIABLES', 'DEFAULT_KERNEL_CACHE_CAPACITY', 'KernelCacheSetting',
           'set_cpu_kernel_cache']

#: oneDNN's primitive cache and PyTorch's own (ideep) cache of them; both default to 1024
KERNEL_CACHE_VARIABLES = ('ONEDNN_PRIMITIVE_CACHE_CAPACITY', 'LRU_CACHE_CAPACITY')

#: entries per cache the training tools ask for (the ``cpu_kernel_cache`` config key)
DEFAULT_KERNEL_CACHE_CAPACITY = 4096


@dataclass
class KernelCacheSetting:
    """What :func:`set_cpu_kernel_cache` did.

    Args:
        capacity: the entries asked for.
        changed: the variables it set.
        kept: the variables a user had set already, with their values (left as they are).
    """

    capacity: int
    changed: Dict[str, str] = field(default_factory=dict)
    kept: Dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One log line."""
        parts = []
        if self.changed:
            parts.append(f'{self.capacity} entries ({", ".join(sorted(self.changed))})')
        if self.kept:
            parts.append('kept ' + ', '.join(f'{k}={v}' for k, v in sorted(self.kept.items())))
        return 'CPU kernel cache: ' + ('; '.join(parts) or 'unchanged')


def set_cpu_kernel_cache(capacity: int = DEFAULT_KERNEL_CACHE_CAPACITY) -> KernelCacheSetting:
    """Let oneDNN keep ``capacity`` CPU primitives (and PyTorch as many of its own entries).

    Takes effect for caches not created yet, so call it before the process's first
    convolution. A variable already in the environment is the user's choice and stays.

    Args:
        capacity: entries per cache, a positive int (oneDNN's default is 1024).
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f'cpu_kernel_cache must be a positive int (entries; oneDNN keeps 1024 '
                         f'by default), got {capacity!r}')
    setting = KernelCacheSetting(capacity)
    for name in KERNEL_CACHE_VARIABLES:
        if name in os.environ:
            setting.kept[name] = os.environ[name]
        else:
            os.environ[name] = setting.changed[name] = str(capacity)
    return setting
