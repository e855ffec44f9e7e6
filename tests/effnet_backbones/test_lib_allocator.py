"""effnet_backbones.allocator: when the glibc thresholds are set, and that with them the memory
of freed tensors goes back to the system where glibc's dynamic thresholds keep it."""
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from effnet_backbones.allocator import tune_cpu_allocator
from forked import run_forked_from_a_large_process

GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'
needs_glibc = pytest.mark.skipif(not GLIBC, reason='glibc malloc only')

# A first large free raises glibc's dynamic mmap threshold (as a first training step does); then
# of 48 "activations" of 2 MiB every other one is freed (what the others keep live is a heap top
# that cannot shrink). Prints the MiB freed but still held, and the MiB that were allocated.
RETAINED = textwrap.dedent('''
    import os, sys
    import torch
    from effnet_backbones.allocator import tune_cpu_allocator
    def rss():
        with open('/proc/self/statm') as statm:
            return int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    if sys.argv[1] == 'lean':
        assert tune_cpu_allocator().applied
    first = torch.ones(16 * 2**20 // 4)
    del first
    base = rss()
    activations = [torch.ones(2 * 2**20 // 4) for _ in range(48)]
    rise = rss() - base
    del activations[::2]
    live = sum(tensor.numel() * 4 for tensor in activations)
    print((rss() - base - live) / 2**20, rise / 2**20)
''')


def _retained_mib(mode):
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith('MALLOC_')}
    out = subprocess.run([sys.executable, '-c', RETAINED, mode], capture_output=True, text=True,
                         env=environ, check=True).stdout.split()
    return float(out[0]), float(out[1])


@needs_glibc
def test_freed_tensors_return_to_the_system_only_when_lean():
    default_retained, default_rise = _retained_mib('default')
    lean_retained, lean_rise = _retained_mib('lean')
    assert default_rise > 90 and lean_rise > 90  # 48 x 2 MiB were live
    assert lean_retained < 4  # the 24 freed tensors' 48 MiB went back, but for a few pages
    assert default_retained > 40  # why the setting exists: glibc's defaults keep them


@needs_glibc
def test_tuning_applies_on_glibc_with_the_given_thresholds():
    # in a subprocess: applied here, the thresholds would stay set for the other tests
    check = ('from effnet_backbones.allocator import tune_cpu_allocator\n'
             'tuning = tune_cpu_allocator(environ={})\n'
             'print(tuning.applied, sorted(tuning.thresholds.items()), tuning.describe())')
    out = subprocess.run([sys.executable, '-c', check], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("True [('mmap_threshold', 131072), ('trim_threshold', 131072)]")
    assert 'CPU allocator: lean, glibc malloc mmap_threshold=131072' in out


@pytest.mark.parametrize('environ,reason', [
    ({'MALLOC_MMAP_THRESHOLD_': '65536'}, 'MALLOC_MMAP_THRESHOLD_=65536 already set'),
    ({'GLIBC_TUNABLES': 'glibc.malloc.trim_threshold=0'}, 'GLIBC_TUNABLES'),
    ({'LD_PRELOAD': '/usr/lib/libjemalloc.so.2'}, 'jemalloc preloaded'),
])
@needs_glibc
def test_what_the_user_chose_is_left_alone(environ, reason):
    tuning = tune_cpu_allocator(environ=environ)
    assert not tuning.applied and reason in tuning.reason and tuning.thresholds == {}
    assert tuning.describe().startswith('CPU allocator: left as it is')


def test_bad_thresholds_are_named():
    with pytest.raises(ValueError, match='mmap_threshold=-1: expected a positive'):
        tune_cpu_allocator(mmap_threshold=-1)


# Peak RSS: a 256 MiB block is touched and freed (a large block is its own mapping, so it goes
# back at once); after the reset the peak is today's RSS, and a 128 MiB block raises it by that
# (Linux counts RSS per CPU in batches, and under load a process's count can move by a few
# hundred MiB on its own: the bounds are loose where it can only add). Prints the MiB of: the
# first peak above the start, the peak after the reset above the start, and the last peak above
# the reset one.
PEAK = textwrap.dedent('''
    import torch
    from effnet_backbones.allocator import current_rss_bytes, peak_rss_bytes, reset_peak_rss
    torch.ones(2**20).sum()  # first kernels and threads: what loads on first use, not measured
    start = current_rss_bytes()
    block = torch.ones(256 * 2**20 // 4)
    del block
    first = peak_rss_bytes()
    assert reset_peak_rss()
    after_reset = peak_rss_bytes()
    kept = torch.ones(128 * 2**20 // 4)
    print((first - start) / 2**20, (after_reset - start) / 2**20,
          (peak_rss_bytes() - after_reset) / 2**20)
''')


@pytest.mark.skipif(platform.system() != 'Linux', reason='/proc/self/clear_refs is Linux')
def test_peak_rss_measures_from_a_reset():
    output = run_forked_from_a_large_process('-c', PEAK).split()
    first, after_reset, last = (float(value) for value in output)
    assert first >= 250  # the freed block counts in the peak until the reset
    assert after_reset < 96  # then the peak is where the RSS stands
    assert 100 <= last <= 600  # and it grows with what is allocated after
