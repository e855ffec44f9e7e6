"""EfficientNet B0-B7 as exact, fast, multi-scale backbones for dense prediction."""
from .backbone import EfficientNet, TapInfo
from .classifier import EfficientNetClassifier
from .factory import create_backbone, list_backbones
from .registry import MODELS
from .spec import ARCHS, SCALING, build_plan

__version__ = '0.1.0'

__all__ = ['EfficientNet', 'TapInfo', 'EfficientNetClassifier', 'create_backbone',
           'list_backbones', 'MODELS', 'ARCHS', 'SCALING', 'build_plan', '__version__']
