"""DDP through torchrun on CPU (gloo): 2 ranks equal one process with the same global batch."""
import os
import subprocess
import sys

import pytest
import torch

from seg_data import make_dataset
from tool_loader import ROOT, free_port
from tasks.engine import load_from_local, prepare_train_config

QUICK = ROOT / 'configs' / 'unet_effb0_quick.py'
ITERS = 4

# Equality needs per-sample-additive work: GroupNorm (no per-rank BN statistics), no decoder norm,
# cross-entropy only (Dice over a batch is not the mean of per-rank Dice), equal image sizes.
CONFIG = f"""
_base_ = ['{QUICK}']
experiment_name = 'ddp'
model = dict(encoder_options=dict(drop_path_rate=0.0, norm_layer='gn'),
             decoder_options=dict(decoder_channels=[16, 16, 16, 16, 16], decoder_use_norm=False),
             losses=[dict(type='effnet_backbones.CrossEntropyLoss', weight=1.0)])
_loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(**_loader, dataset=dict(crop_size=64, pipeline=[]))
val_dataloader = dict(**_loader)
test_dataloader = dict(**_loader)
randomness = dict(seed=0, deterministic=True)
auto_scale_lr = dict(enable=True, base_batch_size=1)
default_hooks = dict(checkpoint=dict(save_best=None), logger=dict(interval=1))
"""


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('ddp')
    data = make_dataset(root / 'data', train_sizes=((64, 64),) * 6, val_sizes=((64, 64),) * 2)
    config = root / 'ddp_config.py'
    config.write_text(CONFIG)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    common = ['--data-root', str(data), '--max-iters', str(ITERS), '--cfg-options',
              f'train_cfg.val_interval={ITERS}', f'default_hooks.checkpoint.interval={ITERS}']
    single = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'train.py'), str(config), '--work-dir',
         str(root / 'single'), *common, 'train_dataloader.batch_size=2'],
        capture_output=True, text=True, timeout=600, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', str(ROOT / 'tools' / 'train.py'), str(config),
         '--launcher', 'pytorch', '--work-dir', str(root / 'ddp'), *common,
         'train_dataloader.batch_size=1'],
        capture_output=True, text=True, timeout=600, env=env)
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    return root, single.stdout + single.stderr, ddp.stdout + ddp.stderr


def test_two_ranks_equal_one_process_with_the_same_global_batch(runs):
    root, _, _ = runs
    ddp = load_from_local(str(root / 'ddp' / f'iter_{ITERS}.pth'))
    single = load_from_local(str(root / 'single' / f'iter_{ITERS}.pth'))
    assert ddp['meta']['iter'] == single['meta']['iter'] == ITERS
    for key, value in single['state_dict'].items():
        torch.testing.assert_close(ddp['state_dict'][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_checkpoints_written_once_by_rank_zero_and_lr_scaled_by_global_batch(runs):
    root, single_log, ddp_log = runs
    names = sorted(p.name for p in (root / 'ddp').glob('*.pth'))
    assert names == sorted(p.name for p in (root / 'single').glob('*.pth')) == [f'iter_{ITERS}.pth']
    assert len(list((root / 'ddp').glob('*/*.log'))) == 1  # one log, rank 0's
    # global batch 2 against base_batch_size 1: both runs double the configured lr
    for log in (single_log, ddp_log):
        assert 'the current batch size is 2. Scaling the original LR by 2.0' in log
    assert 'Distributed training: True' in ddp_log and 'GPU number: 2' in ddp_log  # 2 processes


def test_distributed_on_cpu_uses_gloo(tmp_path):
    cfg = prepare_train_config(str(QUICK), work_dir=str(tmp_path), launcher='pytorch')
    expected = 'nccl' if torch.cuda.is_available() else 'gloo'
    assert cfg.env_cfg.dist_cfg.backend == expected
    assert prepare_train_config(str(QUICK), work_dir=str(tmp_path)).env_cfg.dist_cfg.backend == 'nccl'
