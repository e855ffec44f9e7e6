"""MMEngine registry of the ``effnet_backbones`` scope.

MMEngine resolves a scoped type ``'effnet_backbones.EfficientNet'`` by importing
``effnet_backbones.registry`` and looking for a child of its root ``MODELS`` with this scope, so a
config in any scope (mmdet's, mmseg's, the root) can build our models without importing us first.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

from .backbone import EfficientNet
from .classifier import EfficientNetClassifier

__all__ = ['MODELS', 'SCOPE']

SCOPE = 'effnet_backbones'

MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE)
MODELS.register_module(module=EfficientNet)
MODELS.register_module(module=EfficientNetClassifier)
