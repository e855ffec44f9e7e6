"""CPU memory a user sees: glibc malloc settings under which RSS follows live tensors.

PyTorch's CPU allocator calls ``posix_memalign``/``free`` for every tensor, so the C library's
heap decides what the process holds. glibc serves a request above its *mmap threshold* with its
own mapping, returned to the system on free; below it the request comes from the heap, which
gives memory back only from its top. The threshold starts at 128 KiB, but glibc raises it to the
size of every mmapped block that is freed, up to 32 MiB: after the first training step most
activations (1-32 MiB) come from the heap, and the heap keeps the holes they leave between
long-lived blocks. Peak RSS then exceeds live memory by an amount that depends on allocation
history: the memory-efficient path's 0.47x saved activations showed up as 0.71-0.86x of timm's
RSS rise by chance.

:func:`tune_cpu_allocator` fixes both thresholds (what ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` do at start-up), so every large tensor gets its own mapping and the
peak follows live memory. The price is a fresh mapping, page faults and zeroing for each of
them: on this project's 2-core VM a B0 training step took 1.4-1.9x as long
(docs/benchmarks.md, "Memory a user sees"). It is therefore a choice, not a default:
``cpu_allocator = 'lean'`` in a config (``tools/train.py ... --cfg-options cpu_allocator=lean``),
or one call at the start of one's own script. It changes nothing where it would not help or might
clash: not glibc, another allocator preloaded, or thresholds the user already chose.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import resource
import sys
from dataclasses import dataclass, field
from typing import Dict, Optional

__all__ = ['AllocatorTuning', 'tune_cpu_allocator', 'check_cpu_allocator', 'apply_cpu_allocator',
           'LEAN_THRESHOLDS',
           'CPU_ALLOCATORS', 'GLIBC_MALLOC_VARIABLES', 'current_rss_bytes', 'peak_rss_bytes',
           'reset_peak_rss']

#: the choices of the ``cpu_allocator`` config key (and of the benchmark's ``NAME@lean``):
#: glibc as it is, glibc with fixed thresholds, or the caching allocator of
#: :mod:`effnet_backbones.caching_allocator`
CPU_ALLOCATORS = ('default', 'lean', 'caching')

#: bytes; glibc's own starting mmap threshold, kept fixed instead of growing to 32 MiB
LEAN_THRESHOLDS: Dict[str, int] = {'mmap_threshold': 128 * 1024, 'trim_threshold': 128 * 1024}

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: environment variables through which a user sets the same thresholds at start-up
GLIBC_MALLOC_VARIABLES = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_')
_OTHER_ALLOCATORS = ('jemalloc', 'tcmalloc', 'mimalloc')


def peak_rss_bytes() -> int:
    """The highest resident set size this process has had so far (or since
    :func:`reset_peak_rss`), in bytes."""
    # Linux: the memory map's own high-water mark. getrusage's ru_maxrss also keeps the peak of
    # the map an exec replaced, so a child forked from a large process (a pytest worker) would
    # report its parent's size, and no reset lowers it
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024  # Linux reports kilobytes


def reset_peak_rss() -> bool:
    """Lower this process's peak resident set size to its current one (Linux 4.0+), so that
    :func:`peak_rss_bytes` measures from now on; returns whether it could."""
    try:
        with open('/proc/self/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')  # '5': reset the high-water mark (proc(5))
        return True
    except OSError:
        return False


def current_rss_bytes() -> Optional[int]:
    """This process's resident set size now, in bytes; None where ``/proc`` is missing."""
    try:
        with open('/proc/self/statm') as statm:
            return int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except OSError:
        return None


@dataclass
class AllocatorTuning:
    """What :func:`tune_cpu_allocator` did.

    Attributes:
        applied: whether the thresholds were set in this process.
        reason: why not, when not applied (empty when applied).
        thresholds: the values set, in bytes (empty when not applied).
    """

    applied: bool
    reason: str = ''
    thresholds: Dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One log line."""
        if self.applied:
            values = ', '.join(f'{key}={value}' for key, value in self.thresholds.items())
            return (f'CPU allocator: lean, glibc malloc {values} (freed tensors return to the '
                    f'system; slower steps)')
        return f'CPU allocator: left as it is ({self.reason})'


def _skip_reason(environ: Dict[str, str]) -> Optional[str]:
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return f'not glibc ({platform.system()} {platform.libc_ver()[0] or "unknown libc"})'
    for name in GLIBC_MALLOC_VARIABLES:
        if name in environ:
            return f'{name}={environ[name]} already set'
    if 'glibc.malloc.' in environ.get('GLIBC_TUNABLES', ''):
        return 'GLIBC_TUNABLES sets malloc already'
    preload = environ.get('LD_PRELOAD', '')
    for allocator in _OTHER_ALLOCATORS:
        if allocator in preload:
            return f'{allocator} preloaded'
    return None


def tune_cpu_allocator(mmap_threshold: int = LEAN_THRESHOLDS['mmap_threshold'],
                       trim_threshold: int = LEAN_THRESHOLDS['trim_threshold'],
                       environ: Optional[Dict[str, str]] = None) -> AllocatorTuning:
    """Fix glibc's mmap and trim thresholds in this process, where that is safe.

    Args:
        mmap_threshold: allocations of at least this many bytes get their own mapping.
        trim_threshold: free space at the heap's top above this is returned to the system.
        environ: the environment to decide from (default ``os.environ``).

    Returns:
        What was done and, if nothing, why. Safe to call more than once; settings reach
        DataLoader workers forked afterwards.
    """
    for name, value in (('mmap_threshold', mmap_threshold), ('trim_threshold', trim_threshold)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f'{name}={value!r}: expected a positive number of bytes')
    reason = _skip_reason(dict(os.environ if environ is None else environ))
    if reason is not None:
        return AllocatorTuning(applied=False, reason=reason)
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    mallopt = getattr(libc, 'mallopt', None)
    if mallopt is None:
        return AllocatorTuning(applied=False, reason='libc has no mallopt')
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold is capped at 32 MiB on 64-bit glibc
    if mallopt(_M_MMAP_THRESHOLD, mmap_threshold) != 1:
        return AllocatorTuning(applied=False,
                               reason=f'glibc refused mmap_threshold={mmap_threshold}')
    if mallopt(_M_TRIM_THRESHOLD, trim_threshold) != 1:
        return AllocatorTuning(applied=False,
                               reason=f'glibc refused trim_threshold={trim_threshold}')
    return AllocatorTuning(applied=True, thresholds=dict(mmap_threshold=mmap_threshold,
                                                         trim_threshold=trim_threshold))


def check_cpu_allocator(choice: str) -> None:
    """Raise a ValueError naming ``choice`` unless it is one of :data:`CPU_ALLOCATORS`."""
    if choice not in CPU_ALLOCATORS:
        raise ValueError(f'cpu_allocator={choice!r}: expected one of {CPU_ALLOCATORS} '
                         "('caching': freed tensors reused, peak RSS at live memory; 'lean': "
                         'glibc thresholds, peak RSS at live memory, slower steps; '
                         'docs/benchmarks.md)')


def apply_cpu_allocator(choice: str) -> str:
    """Put the ``cpu_allocator`` choice into effect in this process (call it before the model
    and the DataLoader workers exist); returns the log line.

    Args:
        choice: ``'default'`` (glibc as it is), ``'lean'`` (:func:`tune_cpu_allocator`) or
            ``'caching'`` (:func:`~effnet_backbones.caching_allocator.install_caching_cpu_allocator`).
    """
    check_cpu_allocator(choice)
    if choice == 'lean':
        return tune_cpu_allocator().describe()
    if choice == 'caching':
        from .caching_allocator import install_caching_cpu_allocator
        return install_caching_cpu_allocator().describe()
    return ("CPU allocator: glibc default (cpu_allocator='caching' keeps peak RSS at live memory: "
            'docs/benchmarks.md)')
