"""Registers the training machinery's hooks, all in one place.

Task classes live in the library's registries (scope ``effnet_backbones``), so configs name them
``type='effnet_backbones.NanLossGuardHook'`` from any scope. ``tasks/engine/__init__.py`` imports
this module, so a config's ``custom_imports=dict(imports=['tasks.engine'])`` registers them.
It also gives the scope an optimiser registry (a child of MMEngine's ``OPTIMIZERS``) holding
``effnet_backbones.RMSpropTF`` (timm's TF-style RMSprop), and an optimiser-wrapper constructor
registry holding ``effnet_backbones.FastOptimWrapperConstructor``.
"""
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import Registry
from timm.optim import RMSpropTF

from effnet_backbones.registry import HOOKS, SCOPE

from .crash_safety import SafeCheckpointHook
from .hooks import NanLossGuardHook, TrainingCurvesHook
from .optim import FastOptimWrapperConstructor
from .flops import TrainingFlopsHook
from .precise_bn import BNMomentumHook, PreciseBNHook, RecomputeBNHook, WindowBNHook
from .progressive import ProgressiveGrowthHook
from .transplant import TransplantInitHook

__all__ = ['OPTIMIZERS', 'OPTIM_WRAPPER_CONSTRUCTORS']  # importing the module is what registers

# the library may define the scope's optimiser registries one day: use them then, never a second
OPTIMIZERS = MMENGINE_OPTIMIZERS._children.get(SCOPE) or Registry(
    'optimizer', parent=MMENGINE_OPTIMIZERS, scope=SCOPE)
OPTIM_WRAPPER_CONSTRUCTORS = MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS._children.get(SCOPE) or Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope=SCOPE)

HOOKS.register_module(module=NanLossGuardHook)
HOOKS.register_module(module=TrainingCurvesHook)
HOOKS.register_module(module=SafeCheckpointHook)
HOOKS.register_module(module=TransplantInitHook)
HOOKS.register_module(module=PreciseBNHook)
HOOKS.register_module(module=BNMomentumHook)
HOOKS.register_module(module=WindowBNHook)
HOOKS.register_module(module=RecomputeBNHook)
HOOKS.register_module(module=TrainingFlopsHook)
HOOKS.register_module(module=ProgressiveGrowthHook)
OPTIMIZERS.register_module(name='RMSpropTF', module=RMSpropTF)
OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=FastOptimWrapperConstructor)
