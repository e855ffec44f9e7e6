"""Distributed training through torchrun: NCCL on GPUs, gloo on CPU.

MMEngine 0.10's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` unconditionally, so on a
CPU machine we open the gloo process group ourselves; the Runner then uses the existing group.
"""
from __future__ import annotations

import datetime
import logging
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log

__all__ = ['set_dist_backend', 'init_cpu_process_group']


def set_dist_backend(cfg: Config) -> Optional[str]:
    """Distributed launches use NCCL on GPUs and gloo on CPU, whatever the config says for the
    other device (``env_cfg.dist_cfg.backend``); on CPU the DDP wrapper gets no device ids.
    Returns the backend set, or None."""
    if cfg.get('launcher', 'none') == 'none':
        return None
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    wanted = 'nccl' if torch.cuda.is_available() else 'gloo'
    if dist_cfg.get('backend', wanted) != wanted:
        print_log(f"distributed on {'CUDA' if wanted == 'nccl' else 'CPU'}: process group backend "
                  f"{wanted!r} instead of the config's {dist_cfg.get('backend')!r}",
                  logger='current', level=logging.WARNING)
    dist_cfg['backend'] = wanted
    if wanted == 'gloo':  # DDP on CPU modules takes no device_ids (MMEngine passes LOCAL_RANK)
        wrapper = cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    return wanted


def init_cpu_process_group(cfg: Config) -> bool:
    """Open the gloo group for a CPU torchrun launch (env:// rendezvous). True if it did."""
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available() \
            or dist.is_initialized():
        return False
    timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout')
    options = {'timeout': datetime.timedelta(seconds=timeout)} if timeout else {}
    dist.init_process_group(backend='gloo', **options)
    return True
