"""Task-independent training machinery on MMEngine: config preparation, Runner building,
checkpoint loading on torch >= 2.6, and the hooks every task uses.

Importing it registers (:mod:`tasks.engine.registry`) ``effnet_backbones.NanLossGuardHook``,
``effnet_backbones.TrainingCurvesHook``, ``effnet_backbones.SafeCheckpointHook`` and
``effnet_backbones.TransplantInitHook``.
"""
from . import registry  # noqa: F401  (registers the hooks below)
from .checkpoint import install_checkpoint_loader, load_from_local
from .config_check import ConfigKeyError, check_config
from .crash_safety import (SafeCheckpointHook, find_resumable_checkpoint,
                           install_atomic_file_backend)
from .hooks import NanLossGuardHook, NonFiniteLossError, TrainingCurvesHook
from .inference_options import apply_inference_options
from .report import metrics_table, write_metrics_json
from .runner import build_runner, prepare_test_config, prepare_train_config, test, train
from .transplant import TransplantInitHook, apply_init_from, grow_checkpoint, transplant_into

__all__ = ['install_checkpoint_loader', 'load_from_local', 'SafeCheckpointHook',
           'find_resumable_checkpoint', 'install_atomic_file_backend', 'ConfigKeyError', 'check_config',
           'NanLossGuardHook', 'NonFiniteLossError', 'TrainingCurvesHook',
           'apply_inference_options', 'metrics_table',
           'write_metrics_json', 'build_runner', 'prepare_test_config', 'prepare_train_config',
           'test', 'train', 'TransplantInitHook', 'apply_init_from', 'grow_checkpoint',
           'transplant_into']
