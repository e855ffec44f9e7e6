"""Config preparation and Runner building for ``tools/train.py`` and ``tools/test.py``.

Nothing here is task-specific: a config names its model, datasets, metric and hooks, and its
``custom_imports`` register them.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, Optional

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from effnet_backbones.allocator import apply_cpu_allocator, check_cpu_allocator
from effnet_backbones.kernel_cache import set_cpu_kernel_cache
from effnet_backbones.compiling import check_memory_budget, compile_model

from .checkpoint import CheckpointFitHook, checkpoint_meta, install_checkpoint_loader
from .config import (apply_cpu_profile, default_work_dir, load_config, merge_options,
                     rescale_schedule, set_amp, set_data_root, set_resume)
from .config_check import check_config
from .data import resolve_from_data
from .crash_safety import install_atomic_file_backend
from .distributed import init_cpu_process_group, set_dist_backend
from .progressive import apply_progressive, set_progressive_length
from .transplant import apply_init_from

__all__ = ['prepare_train_config', 'prepare_test_config', 'build_runner', 'compile_options_of',
           'train', 'test']


def prepare_train_config(config: str, work_dir: Optional[str] = None,
                         data_root: Optional[str] = None, max_iters: Optional[int] = None,
                         resume: Optional[str] = None, amp: bool = False,
                         cfg_options: Optional[Dict[str, Any]] = None,
                         launcher: str = 'none',
                         compile: Optional[Any] = None) -> Config:
    """The training config after the command-line options, in a fixed order of precedence:
    config < cpu_profile (no CUDA) < --max-iters < --data-root, --amp, --compile < --cfg-options.

    ``compile``: True (compile the model) or a memory budget in [0, 1] (compile with it); None
    keeps the config's ``compile`` key."""
    cfg = load_config(config)
    cfg_options = dict(cfg_options or {})
    if 'train_cfg.max_iters' in cfg_options:  # the same request as --max-iters, spelled as a key
        requested = int(cfg_options.pop('train_cfg.max_iters'))
        max_iters = requested if max_iters is None else max_iters
    merge_options(cfg, cfg_options)  # first too, so --cfg-options cpu_profile=None can turn it off
    set_progressive_length(cfg)  # a progressive run is as long as its phases, then rescaled
    apply_cpu_profile(cfg)
    if max_iters is not None:  # from the length the CPU profile set, if it applied
        rescale_schedule(cfg, max_iters)
    if data_root is not None:
        set_data_root(cfg, data_root)
    set_amp(cfg, amp)
    if compile is not None:
        cfg.compile = {} if compile is True else dict(memory_budget=compile)
    merge_options(cfg, cfg_options)
    compile_options_of(cfg)  # a bad memory budget fails here, before anything is built
    resolve_from_data(cfg)  # classes and channels from the data; before anything is written
    cfg.work_dir = work_dir or cfg.get('work_dir') or default_work_dir(cfg)
    cfg.launcher = launcher
    set_dist_backend(cfg)
    set_resume(cfg, resume)
    apply_init_from(cfg)  # init_from=dict(type='transplant', ...): grow a trained smaller model
    apply_progressive(cfg)  # progressive=dict(phases=[...]): grow B0 -> B2 -> B4 in one run
    return cfg


def prepare_test_config(config: str, checkpoint: str, work_dir: Optional[str] = None,
                        data_root: Optional[str] = None,
                        cfg_options: Optional[Dict[str, Any]] = None,
                        launcher: str = 'none', recompute_bn: Optional[int] = None,
                        bn_seed: int = 0, bn_deterministic: bool = False) -> Config:
    """The evaluation config: weights from ``checkpoint``, data from ``data_root``.

    ``recompute_bn=N``: before testing, the BatchNorm statistics are recomputed over N batches
    of the config's ``train_dataloader`` drawn with ``bn_seed`` (with dropout and drop path off
    if ``bn_deterministic``)
    (:class:`~tasks.engine.precise_bn.RecomputeBNHook`); without CUDA the ``cpu_profile``'s
    ``train_dataloader`` options apply first, so the batches are the crops a CPU run trained on.
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} not found')
    if recompute_bn is not None and (isinstance(recompute_bn, bool)
                                     or not isinstance(recompute_bn, int) or recompute_bn < 1):
        raise ValueError(f'--recompute-bn {recompute_bn!r}: expected a positive number of '
                         'training batches')
    cfg = load_config(config)
    if recompute_bn is not None:
        merge_options(cfg, cfg_options)  # first too, as in training: cpu_profile=None turns it off
        _train_batches_as_trained(cfg)
    if data_root is not None:
        set_data_root(cfg, data_root)
    merge_options(cfg, cfg_options)
    if recompute_bn is not None:
        cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                            dict(type='effnet_backbones.RecomputeBNHook', num_iters=recompute_bn,
                                 seed=bn_seed, deterministic=bn_deterministic)]
    resolve_from_data(cfg, checkpoint_meta(checkpoint))  # the classes it was trained with
    cfg.work_dir = work_dir or cfg.get('work_dir') or default_work_dir(cfg)
    _per_case_metrics(cfg)
    cfg.load_from = checkpoint
    cfg.resume = False
    cfg.launcher = launcher
    return cfg


def _train_batches_as_trained(cfg: Config) -> None:
    """Without CUDA, the ``cpu_profile``'s ``train_dataloader`` options (batch, crop, workers):
    the training batches a CPU run of this config drew."""
    profile = cfg.get('cpu_profile') or {}
    if torch.cuda.is_available() or not isinstance(profile, dict):
        return
    options = {key: value for key, value in (profile.get('options') or {}).items()
               if key.startswith('train_dataloader.')}
    cfg.merge_from_dict(options)


def _per_case_metrics(cfg: Config) -> None:
    """Volume metrics report every case when testing (the table tools/test.py prints)."""
    evaluator = cfg.get('test_evaluator')
    for entry in (evaluator if isinstance(evaluator, list) else [evaluator]):
        if isinstance(entry, dict) and 'VolumeSegMetric' in str(entry.get('type', '')):
            entry['per_case'] = True


def build_runner(cfg: Config) -> Runner:
    """Check the config for key typos, make checkpoints load on torch >= 2.6, be written
    atomically and fit the model, set the CPU allocator the config asks for, build the Runner."""
    check_config(cfg)
    install_checkpoint_loader()
    install_atomic_file_backend()
    init_cpu_process_group(cfg)
    allocator = _apply_cpu_allocator(cfg)  # before the model and the (forked) DataLoader workers
    kernel_cache = _apply_cpu_kernel_cache(cfg)  # before the first convolution creates the caches
    compile_options = compile_options_of(cfg)
    if compile_options is not None:  # MMEngine would compile train_step, optimiser step included
        cfg = cfg.copy()
        cfg.compile = None
    runner = Runner.from_cfg(cfg)
    runner.register_hook(CheckpointFitHook())  # a checkpoint of another model is an error
    for line in (allocator, kernel_cache):
        if line is not None:
            runner.logger.info(line)
    if compile_options is not None:
        compile_model(runner.model, **compile_options)
        runner.logger.info(f'model compiled in place with {compile_options} (torch.compile; '
                           'the first steps and validations include compilation)')
    return runner


def compile_options_of(cfg: Config) -> Optional[Dict[str, Any]]:
    """The ``compile`` key as :func:`~effnet_backbones.compile_model` options (None: not
    compiled). ``compile=True`` or ``compile=dict(memory_budget=0.5, backend=..., mode=...)``:
    the model's forward and loss are compiled in place; ``memory_budget`` keeps at most that
    share of the compiler's default saved activations."""
    value = cfg.get('compile', None)
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f'compile={value!r}: expected True, False or a dict of torch.compile '
                         'options with an optional memory_budget in [0, 1]')
    options = dict(value)
    check_memory_budget(options.get('memory_budget'), name='compile.memory_budget')
    return options


def _apply_cpu_allocator(cfg: Config) -> Optional[str]:
    """The config's ``cpu_allocator`` (:func:`~effnet_backbones.allocator.apply_cpu_allocator`);
    the log line, None on CUDA."""
    choice = cfg.get('cpu_allocator', 'default')
    check_cpu_allocator(choice)  # a bad value fails on every machine, not only on CPU
    if torch.cuda.is_available():  # activations live on the GPU; the host heap is not the issue
        return None
    return apply_cpu_allocator(choice)


def _apply_cpu_kernel_cache(cfg: Config) -> Optional[str]:
    """``cpu_kernel_cache=N``: room for N kernels in oneDNN's caches
    (:func:`~effnet_backbones.kernel_cache.set_cpu_kernel_cache`); the log line, None on CUDA
    or with ``cpu_kernel_cache=None``."""
    capacity = cfg.get('cpu_kernel_cache', None)
    if capacity is None or torch.cuda.is_available():
        return None
    return set_cpu_kernel_cache(capacity).describe()


def train(cfg: Config) -> Runner:
    """Build the runner and train; returns the runner (its ``iter``, ``work_dir`` ...)."""
    runner = build_runner(cfg)
    runner.train()
    return runner


def test(cfg: Config) -> Dict[str, float]:
    """Evaluate ``cfg.load_from`` on the test split; returns the flat metrics."""
    runner = build_runner(cfg)
    return dict(runner.test())
