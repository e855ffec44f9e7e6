"""Crash safety of training: SIGKILL mid-run and mid-save, atomic writes, resume from the last
good checkpoint with the same final weights as an uninterrupted run (CPU, deterministic)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seg_data import make_dataset
from tool_loader import ROOT, TINY_UNET_LINES, tiny_unet_model_line
from tasks.engine import find_resumable_checkpoint, install_atomic_file_backend, load_from_local
from tasks.engine.crash_safety import AtomicLocalBackend, is_complete_checkpoint

QUICK = ROOT / 'configs' / 'unet_effb0_quick.py'

# Deterministic: fixed 64 px images and crops, no random augmentation or drop path, one process.
CONFIG = f"""
_base_ = ['{QUICK}']
experiment_name = 'crash'
""" + tiny_unet_model_line(0.0) + TINY_UNET_LINES + """default_hooks = dict(checkpoint=dict(max_keep_ckpts=1), logger=dict(interval=1))
"""
ITERS = 8


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('crash')
    data = make_dataset(root / 'data', train_sizes=((64, 64),) * 4, val_sizes=((64, 64),))
    config = root / 'crash_config.py'
    config.write_text(CONFIG)
    return root, data, config


def _command(config, data, work, *extra):
    return [sys.executable, str(ROOT / 'tools' / 'train.py'), str(config), '--work-dir', str(work),
            '--data-root', str(data), '--max-iters', str(ITERS),
            # --cfg-options win over the intervals --max-iters would rescale
            '--cfg-options', 'default_hooks.checkpoint.interval=2', 'train_cfg.val_interval=4',
            *extra]


def _run(command, timeout=600):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _weights(path):
    return load_from_local(str(path))['state_dict']


def _wait_for(predicate, process, timeout=300):
    start = time.time()
    while not predicate():
        assert process.poll() is None, 'training ended before it could be killed'
        assert time.time() - start < timeout, 'timed out waiting'
        time.sleep(0.2)


@pytest.fixture(scope='module')
def uninterrupted(setup):
    root, data, config = setup
    work = root / 'straight'
    _run(_command(config, data, work))
    return work


def _assert_same_final_weights(work, uninterrupted):
    """The run in ``work`` ended at ITERS with the weights of the uninterrupted run."""
    assert load_from_local(str(work / f'iter_{ITERS}.pth'))['meta']['iter'] == ITERS
    final, reference = _weights(work / f'iter_{ITERS}.pth'), _weights(uninterrupted / f'iter_{ITERS}.pth')
    assert final.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(final[key], reference[key], rtol=1e-5, atol=1e-6, msg=key)


def test_sigkill_mid_run_then_resume_ends_with_the_same_weights(setup, uninterrupted):
    root, data, config = setup
    work = root / 'killed'
    process = subprocess.Popen(_command(config, data, work), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    try:
        _wait_for(lambda: find_resumable_checkpoint(str(work)) is not None
                  and Path(find_resumable_checkpoint(str(work))).name != 'iter_2.pth', process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    resumed_from = Path(find_resumable_checkpoint(str(work))).name
    assert resumed_from in ('iter_4.pth', 'iter_6.pth')
    _run(_command(config, data, work, '--resume'))
    assert not (work / 'iter_2.pth').exists()  # max_keep_ckpts=1 still rotates
    _assert_same_final_weights(work, uninterrupted)


KILL_IN_SAVE = """
import os, sys, time
sys.argv = sys.argv[1:]
from tasks.engine import crash_safety
real_put = crash_safety.AtomicLocalBackend.put
saves = []

def slow_put(self, obj, filepath):
    if str(filepath).endswith('.pth'):
        saves.append(filepath)
        if len(saves) == 2:  # the second checkpoint: write half of it, then hang until killed
            with crash_safety.atomic_path(filepath) as tmp:
                with open(tmp, 'wb') as out:
                    out.write(obj[: len(obj) // 2])
                    out.flush()
                    open(os.environ['MARKER'], 'w').close()
                    time.sleep(600)
    return real_put(self, obj, filepath)

crash_safety.AtomicLocalBackend.put = slow_put
import runpy
sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as when the script is run directly
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def test_sigkill_during_a_checkpoint_save_keeps_the_last_good_one(setup, uninterrupted):
    root, data, config = setup
    work, marker = root / 'killed_in_save', root / 'saving'
    process = subprocess.Popen(
        [sys.executable, '-c', KILL_IN_SAVE, *_command(config, data, work)[1:]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, 'MARKER': str(marker), 'OMP_NUM_THREADS': '1',
             'PYTHONPATH': str(ROOT)})
    try:
        _wait_for(marker.exists, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # mmengine would have deleted iter_2.pth (max_keep_ckpts=1) before writing iter_4.pth
    assert (work / 'iter_2.pth').is_file() and is_complete_checkpoint(str(work / 'iter_2.pth'))
    assert not (work / 'iter_4.pth').exists()
    assert find_resumable_checkpoint(str(work)) == str(work / 'iter_2.pth')
    assert _weights(work / 'iter_2.pth')  # loadable
    _run(_command(config, data, work, '--resume'))
    _assert_same_final_weights(work, uninterrupted)


def test_resume_skips_a_truncated_checkpoint_and_a_broken_pointer(tmp_path):
    install_atomic_file_backend()
    good, bad = tmp_path / 'iter_2.pth', tmp_path / 'iter_4.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}}, good)
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # what a kill during a non-atomic save leaves
    (tmp_path / 'last_checkpoint').write_text(str(bad))
    assert not is_complete_checkpoint(str(bad))
    assert find_resumable_checkpoint(str(tmp_path)) == str(good)
    (tmp_path / 'last_checkpoint').write_text('')
    assert find_resumable_checkpoint(str(tmp_path)) == str(good)
    assert find_resumable_checkpoint(str(tmp_path / 'empty')) is None


def test_atomic_backend_leaves_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    target = tmp_path / 'iter_2.pth'
    target.write_bytes(b'old good checkpoint')

    def interrupted(fd):
        raise KeyboardInterrupt  # killed after writing the temporary file, before the rename

    monkeypatch.setattr(os, 'fsync', interrupted)
    with pytest.raises(KeyboardInterrupt):
        AtomicLocalBackend().put(b'new checkpoint', target)
    assert target.read_bytes() == b'old good checkpoint'
    assert [p.name for p in tmp_path.iterdir()] == ['iter_2.pth']
