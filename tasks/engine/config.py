"""From a config file and command-line options to the config the Runner is built from.

Each function makes one change and says what it did, so ``tools/train.py`` and ``tools/test.py``
stay a list of calls and every task (segmentation, detection) shares them.
"""
from __future__ import annotations

import copy
import logging
import os.path as osp
from typing import Any, Dict, Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log

__all__ = ['load_config', 'default_work_dir', 'set_data_root', 'rescale_schedule',
           'apply_cpu_profile', 'set_amp', 'set_resume', 'merge_options']

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _log(message: str, level: int = logging.INFO) -> None:
    print_log(message, logger='current', level=level)


def load_config(path: str) -> Config:
    """Read a config file (its ``custom_imports`` register the task's classes)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} not found')
    return Config.fromfile(path)


def default_work_dir(cfg: Config) -> str:
    """``work_dirs/<config name>``, MMEngine's convention."""
    return osp.join('work_dirs', osp.splitext(osp.basename(cfg.filename))[0])


def _replace_key(node: Any, key: str, value: Any) -> int:
    """Set ``key`` to ``value`` in every dict under ``node``; return how many were set."""
    count = 0
    if isinstance(node, dict):
        for name in list(node):
            if name == key:
                node[name] = value
                count += 1
            else:
                count += _replace_key(node[name], key, value)
    elif isinstance(node, list):
        count += sum(_replace_key(item, key, value) for item in node)
    return count


def set_data_root(cfg: Config, data_root: str) -> None:
    """Point every dataset at ``data_root`` (each ``data_root`` key under the dataloaders)."""
    if not osp.isdir(data_root):
        raise FileNotFoundError(f'--data-root {data_root} is not a folder')
    cfg.data_root = data_root
    found = sum(_replace_key(cfg[key], 'data_root', data_root)
                for key in DATALOADER_KEYS if cfg.get(key))
    if not found:
        raise KeyError(f'--data-root given but no dataloader of {cfg.filename} has a data_root key')


def _scaled(value: int, factor: float, upper: int) -> int:
    return int(min(upper, max(1, round(value * factor))))


def rescale_schedule(cfg: Config, max_iters: int) -> Dict[str, Any]:
    """Change ``train_cfg.max_iters`` and stretch every iteration count with it.

    Validation, checkpoint and logging intervals and the ``begin``/``end`` of iteration-based
    parameter schedulers keep their fraction of the run. Returns what changed.
    """
    if not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f'max_iters must be a positive int, got {max_iters!r}')
    old = cfg.get('train_cfg', {}).get('max_iters')
    if old is None:
        raise KeyError(f'{cfg.filename}: max_iters needs an iteration-based train_cfg '
                       f"(dict(type='IterBasedTrainLoop', max_iters=...))")
    factor = max_iters / old
    cfg.train_cfg.max_iters = max_iters
    changed: Dict[str, Any] = {'train_cfg.max_iters': max_iters}
    if 'val_interval' in cfg.train_cfg:
        cfg.train_cfg.val_interval = changed['train_cfg.val_interval'] = \
            _scaled(cfg.train_cfg.val_interval, factor, max_iters)
    for hook in ('checkpoint', 'logger'):
        spec = cfg.get('default_hooks', {}).get(hook)
        if spec and 'interval' in spec:
            spec.interval = changed[f'default_hooks.{hook}.interval'] = \
                _scaled(spec.interval, factor, max_iters)
    schedulers = cfg.get('param_scheduler') or []
    for index, scheduler in enumerate(schedulers if isinstance(schedulers, list) else [schedulers]):
        if scheduler.get('by_epoch', True):
            continue
        for key in ('begin', 'end', 'T_max'):
            if key in scheduler:
                value = max_iters if scheduler[key] >= old else round(scheduler[key] * factor)
                if key != 'begin':  # a scheduler must span at least one iteration
                    value = max(value, scheduler.get('begin', 0) + 1 if key == 'end' else 1)
                scheduler[key] = changed[f'param_scheduler.{index}.{key}'] = int(value)
    return changed


def apply_cpu_profile(cfg: Config) -> Optional[Dict[str, Any]]:
    """Without CUDA, shrink the run as the config's ``cpu_profile`` says (and print it).

    ``cpu_profile = dict(max_iters=N, options={'dotted.key': value, ...})``: the schedule is
    rescaled to N iterations, then the options apply (their intervals are written for N). A
    ``--max-iters`` given too rescales this CPU run afterwards, so every interval keeps its share
    of the run actually run. Returns the applied changes, or None on a GPU machine or without one.
    """
    profile = cfg.get('cpu_profile')
    if not profile or torch.cuda.is_available():
        return None
    unknown = set(profile) - {'max_iters', 'options'}
    if unknown:
        raise KeyError(f"cpu_profile keys must be 'max_iters' and 'options', got {sorted(unknown)}")
    changed: Dict[str, Any] = {}
    if profile.get('max_iters'):
        changed.update(rescale_schedule(cfg, profile['max_iters']))
    options = dict(profile.get('options') or {})
    cfg.merge_from_dict(copy.deepcopy(options))  # after rescaling: explicit values stay as written
    changed.update(options)
    _log('No CUDA device: applying the config\'s cpu_profile so the run fits a CPU: '
         + ', '.join(f'{key}={value}' for key, value in changed.items())
         + ' (override with --max-iters / --cfg-options, or --cfg-options cpu_profile=None)',
         logging.WARNING)
    return changed


def set_amp(cfg: Config, enabled: bool) -> Optional[str]:
    """Mixed precision on CUDA (bfloat16 where supported, else float16 with loss scaling).

    MMEngine's AmpOptimWrapper needs CUDA, so on CPU this warns and keeps float32. Returns the
    dtype used, or None.
    """
    if not enabled:
        return None
    if not torch.cuda.is_available():
        _log('--amp asked but no CUDA device: training in float32 on CPU', logging.WARNING)
        return None
    dtype = 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.dtype = dtype
    if dtype == 'float16':
        cfg.optim_wrapper.loss_scale = 'dynamic'
    _log(f'AMP on: {dtype}')
    return dtype


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """``'auto'``: resume from the work dir's last checkpoint; a path: resume from that file."""
    if resume is None:
        return
    cfg.resume = True
    if resume == 'auto':
        # the newest complete checkpoint, even if a kill cut a save or the pointer short
        from .crash_safety import find_resumable_checkpoint
        cfg.load_from = find_resumable_checkpoint(cfg.work_dir)
        if cfg.load_from is None:
            _log(f'--resume: no checkpoint in {cfg.work_dir} yet; starting from iteration 0',
                 logging.WARNING)
    else:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume {resume}: checkpoint not found')
        cfg.load_from = resume


def merge_options(cfg: Config, options: Optional[Dict[str, Any]]) -> None:
    """``--cfg-options key=value ...`` (dotted keys); they win over everything else."""
    if options:
        cfg.merge_from_dict(copy.deepcopy(options))
