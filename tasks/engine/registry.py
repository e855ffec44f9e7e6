"""Registers the training machinery's hooks, all in one place.

Task classes live in the library's registries (scope ``effnet_backbones``), so configs name them
``type='effnet_backbones.NanLossGuardHook'`` from any scope. ``tasks/engine/__init__.py`` imports
this module, so a config's ``custom_imports=dict(imports=['tasks.engine'])`` registers them.
"""
from effnet_backbones.registry import HOOKS

from .crash_safety import SafeCheckpointHook
from .hooks import NanLossGuardHook, TrainingCurvesHook
from .transplant import TransplantInitHook

__all__ = []  # importing the module is what registers; it exports nothing

HOOKS.register_module(module=NanLossGuardHook)
HOOKS.register_module(module=TrainingCurvesHook)
HOOKS.register_module(module=SafeCheckpointHook)
HOOKS.register_module(module=TransplantInitHook)
