"""A caching CPU allocator: freed tensors kept for reuse, mapped memory bounded by the live peak.

PyTorch has a caching allocator for CUDA tensors and none for CPU ones: every CPU tensor is a
``posix_memalign`` and a ``free``. Under glibc's defaults the heap then keeps freed activations
(peak RSS above live memory, by an amount that depends on allocation history); with fixed
thresholds (:func:`~effnet_backbones.allocator.tune_cpu_allocator`) each large tensor is mapped
and zero-filled afresh (RSS follows live memory, slower steps). This module installs a small C++
allocator (``csrc/caching_cpu_allocator.cpp``, compiled on first use with
:func:`torch.utils.cpp_extension.load`) that keeps freed blocks of at least ``min_bytes`` and
hands them out again for requests of the same page-rounded size. A request it cannot serve
first unmaps cached blocks (least recently freed first) of at least its size, so the memory it
holds, live plus cached, never exceeds the highest live total so far plus ``slack_bytes``:
training loops that repeat their shapes reuse resident memory, and peak RSS stays at live
memory. Smaller requests go to the allocator it replaced.

``cpu_allocator = 'caching'`` in a config, or :func:`install_caching_cpu_allocator` at the start
of one's own script. Installing is once per process and cannot be undone; tensors that exist
before keep their own allocator. Where the extension cannot be built (no C++ compiler) nothing
changes and the returned record says why.
"""
from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

__all__ = ['CachingAllocatorStatus', 'install_caching_cpu_allocator', 'caching_allocator_stats',
           'empty_caching_allocator_cache', 'reset_caching_allocator_peaks', 'SOURCE',
           'DEFAULT_MIN_BYTES']

#: the C++ source, shipped inside the package
SOURCE = Path(__file__).resolve().parent / 'csrc' / 'caching_cpu_allocator.cpp'
#: requests below this size go to PyTorch's own allocator (glibc's starting mmap threshold)
DEFAULT_MIN_BYTES = 128 * 1024
_STAT_NAMES = ('live_bytes', 'cached_bytes', 'peak_live_bytes', 'peak_mapped_bytes', 'hits',
               'misses', 'evicted_bytes', 'min_bytes', 'slack_bytes', 'splits')

_lock = threading.Lock()
_library: Optional[ctypes.CDLL] = None


@dataclass
class CachingAllocatorStatus:
    """What :func:`install_caching_cpu_allocator` did.

    Attributes:
        applied: whether the caching allocator serves CPU tensors in this process now.
        reason: why not, when not applied (empty when applied).
        settings: ``min_bytes`` and ``slack_bytes`` in force (empty when not applied).
    """

    applied: bool
    reason: str = ''
    settings: Dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One log line."""
        if self.applied:
            values = ', '.join(f'{key}={value}' for key, value in self.settings.items())
            return (f'CPU allocator: caching ({values}; freed tensors reused, memory held at '
                    f'most the live peak)')
        return f'CPU allocator: left as it is ({self.reason})'


def _load_library() -> ctypes.CDLL:
    """Compile (first use on a machine, cached by torch under ``TORCH_EXTENSIONS_DIR``) and
    load the allocator's shared library."""
    # its import warns that a CPU-only machine has no CUDA runtime: true, and beside the point
    cpp_logger = logging.getLogger('torch.utils.cpp_extension')
    level = cpp_logger.level
    cpp_logger.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load
    finally:
        cpp_logger.setLevel(level)
    path = load(name='effnet_caching_cpu_allocator', sources=[str(SOURCE)],
                extra_cflags=['-O2'], is_python_module=False, verbose=False)
    library = ctypes.CDLL(path)
    library.effnet_caching_cpu_allocator_install.argtypes = (ctypes.c_uint64, ctypes.c_uint64)
    library.effnet_caching_cpu_allocator_install.restype = ctypes.c_int
    library.effnet_caching_cpu_allocator_stats.argtypes = (ctypes.POINTER(ctypes.c_uint64),)
    library.effnet_caching_cpu_allocator_stats.restype = ctypes.c_int
    library.effnet_caching_cpu_allocator_empty_cache.restype = None
    library.effnet_caching_cpu_allocator_reset_peaks.restype = None
    return library


def _check_bytes(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f'{name}={value!r}: expected a whole number of bytes >= {minimum}')


def install_caching_cpu_allocator(min_bytes: int = DEFAULT_MIN_BYTES,
                                  slack_bytes: int = 0) -> CachingAllocatorStatus:
    """Serve this process's CPU tensors from the caching allocator.

    Args:
        min_bytes: requests of at least this many bytes are cached; smaller ones go to the
            allocator that was in place (PyTorch's ``posix_memalign``).
        slack_bytes: how far the memory held (live + cached) may exceed the live peak so far;
            0 keeps peak RSS at live memory, more trades memory for fewer fresh mappings.

    Returns:
        Whether it was installed and, if not, why (no C++ compiler, a build error). A second
        call keeps the first call's settings; if they differ it says so.
    """
    global _library
    _check_bytes('min_bytes', min_bytes, 1)
    _check_bytes('slack_bytes', slack_bytes, 0)
    with _lock:
        if _library is None:
            try:
                _library = _load_library()
            except Exception as error:  # no compiler, headers or ninja: keep PyTorch's allocator
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                return CachingAllocatorStatus(
                    applied=False, reason=f'the caching allocator could not be built: '
                                          f'{first_line[:200]}')
        installed_now = _library.effnet_caching_cpu_allocator_install(min_bytes, slack_bytes)
    stats = caching_allocator_stats()
    settings = dict(min_bytes=stats['min_bytes'], slack_bytes=stats['slack_bytes'])
    if not installed_now and settings != dict(min_bytes=min_bytes, slack_bytes=slack_bytes):
        return CachingAllocatorStatus(
            applied=True, settings=settings,
            reason=f'already installed with {settings}; min_bytes={min_bytes}, '
                   f'slack_bytes={slack_bytes} not applied')
    return CachingAllocatorStatus(applied=True, settings=settings)


def caching_allocator_stats() -> Optional[Dict[str, int]]:
    """The caching allocator's counters (bytes live, cached, peak live, peak held = live +
    cached, hits, misses, bytes unmapped, and its settings); None when it is not installed."""
    if _library is None:
        return None
    values = (ctypes.c_uint64 * len(_STAT_NAMES))()
    if not _library.effnet_caching_cpu_allocator_stats(values):
        return None
    return dict(zip(_STAT_NAMES, (int(value) for value in values)))


def empty_caching_allocator_cache() -> None:
    """Unmap every cached block (live tensors stay); a no-op when not installed."""
    if _library is not None:
        _library.effnet_caching_cpu_allocator_empty_cache()


def reset_caching_allocator_peaks() -> None:
    """Restart the peak and hit/miss counters from now; a no-op when not installed."""
    if _library is not None:
        _library.effnet_caching_cpu_allocator_reset_peaks()

