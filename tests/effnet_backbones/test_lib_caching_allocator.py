"""effnet_backbones.caching_allocator: freed CPU tensors are reused, the memory held never exceeds
the live peak, numbers and forked DataLoader workers are unaffected, and a failed build leaves
PyTorch's allocator in place. Each check installs the allocator in a fresh process (it stays for
the process's life)."""
import json
import platform
import shutil
import subprocess
import sys
import textwrap

import pytest

import effnet_backbones.caching_allocator as caching
from effnet_backbones.allocator import apply_cpu_allocator

# the extension is compiled on first use: a machine without a C++ compiler or ninja keeps
# PyTorch's allocator (test_a_failed_build_... covers that path)
needs_linux = pytest.mark.skipif(
    platform.system() != 'Linux' or not shutil.which('c++') or not shutil.which('ninja'),
    reason='the caching allocator needs Linux (mmap, /proc), a C++ compiler and ninja')
MiB = 2**20


def run_script(script: str, *arguments: str) -> dict:
    """The JSON that ``script`` prints last, run in a fresh interpreter."""
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(script), *arguments],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# reuse of a freed block, then a request of a new size that must unmap the cached block first
COUNTERS = '''
    import json, torch
    from effnet_backbones.caching_allocator import caching_allocator_stats as stats
    from effnet_backbones.caching_allocator import install_caching_cpu_allocator as install
    status = install()
    assert status.applied, status.reason
    MiB = 2**20
    first = torch.ones(4 * MiB // 4)
    first_address = first.data_ptr()
    del first
    second = torch.empty(4 * MiB // 4)
    reused = second.data_ptr() == first_address
    del second
    after_reuse = stats()
    third = torch.ones(6 * MiB // 4)
    after_new_size = stats()
    del third
    small = torch.ones(100)  # below min_bytes: served by the allocator it replaced
    print(json.dumps(dict(reused=reused, after_reuse=after_reuse, after_new_size=after_new_size,
                          end=stats(), again=install(slack_bytes=1).describe())))
'''


@needs_linux
def test_freed_blocks_are_reused_and_a_new_size_unmaps_the_cache_first():
    out = run_script(COUNTERS)
    assert out['reused']
    assert (out['after_reuse']['hits'], out['after_reuse']['misses']) == (1, 1)
    assert out['after_reuse']['cached_bytes'] == 4 * MiB and out['after_reuse']['live_bytes'] == 0
    new_size = out['after_new_size']
    # 4 MiB cached + 6 MiB new would exceed the live peak (6 MiB): the 4 MiB block went back
    assert new_size['evicted_bytes'] == 4 * MiB and new_size['cached_bytes'] == 0
    assert new_size['peak_mapped_bytes'] == new_size['peak_live_bytes'] == 6 * MiB
    assert out['end']['live_bytes'] == 0 and out['end']['cached_bytes'] == 6 * MiB
    assert out['end']['hits'] + out['end']['misses'] == 3  # the small tensor is not counted
    assert 'already installed' in out['again'] or 'caching (min_bytes=131072' in out['again']


# a freed 8 MiB block serves a 3 and a 5 MiB request (split); freed again, the pieces merge and
# serve 8 MiB from the same address
SPLIT_MERGE = '''
    import json, torch
    from effnet_backbones.caching_allocator import caching_allocator_stats as stats
    from effnet_backbones.caching_allocator import install_caching_cpu_allocator as install
    assert install().applied
    MiB = 2**20
    block = torch.empty(8 * MiB // 4)
    start = block.data_ptr()
    del block
    three, five = torch.ones(3 * MiB // 4), torch.ones(5 * MiB // 4)
    inside = sorted([three.data_ptr() - start, five.data_ptr() - start])
    split = stats()
    del three, five
    merged = stats()
    again = torch.empty(8 * MiB // 4)
    same_start = [again.data_ptr() == start]
    del again
    three, five = torch.ones(3 * MiB // 4), torch.ones(5 * MiB // 4)
    del five  # now the piece after the freed one is cached first: merged forward
    del three
    again = torch.empty(8 * MiB // 4)
    same_start.append(again.data_ptr() == start)
    print(json.dumps(dict(inside=inside, split=split, merged=merged, same_start=same_start,
                          end=stats())))
'''


@needs_linux
def test_a_freed_block_is_split_for_smaller_requests_and_merged_when_they_are_freed():
    out = run_script(SPLIT_MERGE)
    assert out['inside'] == [0, 3 * MiB]
    assert (out['split']['hits'], out['split']['misses'], out['split']['splits']) == (2, 1, 1)
    assert out['split']['cached_bytes'] == 0 and out['split']['live_bytes'] == 8 * MiB
    assert out['merged']['cached_bytes'] == 8 * MiB
    assert out['same_start'] == [True, True]
    assert out['end']['misses'] == 1 and out['end']['hits'] == 6
    assert out['end']['peak_mapped_bytes'] == 8 * MiB


# 48 "activations" of 2 MiB, every other one freed, then 16 of 3 MiB: a heap or a cache without
# the rule would hold 48 + 48 + 48 MiB; the live peak is 96 MiB
RSS = '''
    import json, sys, torch
    from effnet_backbones.allocator import current_rss_bytes
    from effnet_backbones.caching_allocator import caching_allocator_stats
    from effnet_backbones.caching_allocator import install_caching_cpu_allocator
    if sys.argv[1] == 'caching':
        assert install_caching_cpu_allocator().applied
    MiB = 2**20
    torch.ones(MiB).sum()
    base = current_rss_bytes()
    activations = [torch.ones(2 * MiB // 4) for _ in range(48)]
    del activations[::2]
    later = [torch.ones(3 * MiB // 4) for _ in range(16)]
    live = sum(tensor.numel() * 4 for tensor in activations + later)
    print(json.dumps(dict(rise_mib=(current_rss_bytes() - base) / MiB, live_mib=live / MiB,
                          stats=caching_allocator_stats())))
'''


@needs_linux
def test_memory_held_stays_at_the_live_peak():
    out = run_script(RSS, 'caching')
    assert out['live_mib'] == 96
    assert out['stats']['peak_mapped_bytes'] <= out['stats']['peak_live_bytes'] == 96 * MiB
    assert out['rise_mib'] < 106  # RSS: the 96 MiB live and a few pages, not 144


# a training step of a small backbone, then a forked DataLoader; prints the loss and a checksum
# of every gradient (bit patterns: the allocator must not change a single number)
STEP = '''
    import hashlib, json, sys, torch
    if sys.argv[1] == 'caching':
        from effnet_backbones.caching_allocator import install_caching_cpu_allocator
        assert install_caching_cpu_allocator().applied
    from effnet_backbones import EfficientNet
    torch.manual_seed(0)
    model = EfficientNet('b0', memory_efficient=sys.argv[2] == 'me')
    x = torch.randn(2, 3, 96, 96)
    digest = hashlib.sha256()
    for _ in range(2):  # the second step runs on reused blocks
        model.zero_grad(set_to_none=True)
        loss = sum(tap.square().mean() for tap in model(x))
        loss.backward()
        for param in model.parameters():
            digest.update(param.grad.numpy().tobytes())
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 3, 64, 64)),
                                         batch_size=2, num_workers=2)
    batches = sum(1 for _ in loader)
    print(json.dumps(dict(loss=float(loss), grads=digest.hexdigest(), batches=batches)))
'''


@needs_linux
@pytest.mark.parametrize('path', ['plain', 'me'])
def test_training_numbers_are_bitwise_those_of_the_default_allocator(path):
    default = run_script(STEP, 'default', path)
    cached = run_script(STEP, 'caching', path)
    assert cached == default
    assert cached['batches'] == 4


def test_a_failed_build_leaves_pytorchs_allocator_and_says_why(monkeypatch):
    def no_compiler():
        raise RuntimeError('Error building extension: c++: not found\nmore lines')

    monkeypatch.setattr(caching, '_library', None)
    monkeypatch.setattr(caching, '_load_library', no_compiler)
    status = caching.install_caching_cpu_allocator()
    assert not status.applied and status.settings == {}
    assert status.reason == 'the caching allocator could not be built: Error building extension: ' \
                            'c++: not found'
    assert status.describe().startswith('CPU allocator: left as it is (the caching allocator')
    assert caching.caching_allocator_stats() is None


@pytest.mark.parametrize('kwargs,message', [
    (dict(min_bytes=0), r'min_bytes=0: expected a whole number of bytes >= 1'),
    (dict(slack_bytes=-1), r'slack_bytes=-1: expected a whole number of bytes >= 0'),
    (dict(min_bytes=1.5), r'min_bytes=1.5: expected a whole number'),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        caching.install_caching_cpu_allocator(**kwargs)


def test_unknown_cpu_allocator_choice_is_named():
    with pytest.raises(ValueError, match=r"cpu_allocator='fast': expected one of \('default', "
                                         r"'lean', 'caching'\)"):
        apply_cpu_allocator('fast')
