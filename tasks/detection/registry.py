"""Registers the detection task's classes, all in one place.

Task classes live in the library's registries (scope ``effnet_backbones``), so configs name them
``type='effnet_backbones.RetinaNet'`` from any scope, next to ``effnet_backbones.EfficientNet``.
``tasks/detection/__init__.py`` imports this module, so a config's
``custom_imports=dict(imports=['tasks.detection'])`` registers them.
"""
from effnet_backbones.registry import DATASETS, METRICS, MODELS

from ..engine.data import register_data_resolver

from .data_preprocessor import DetDataPreprocessor
from .data_config import resolve_detection_data
from .dataset import CocoDetDataset
from .metrics import CocoMetric
from .model import FCOS, EfficientDet, FasterRCNN, RetinaNet

__all__ = []  # importing the module is what registers; it exports nothing

MODELS.register_module(module=RetinaNet)
MODELS.register_module(module=FCOS)
MODELS.register_module(module=FasterRCNN)
MODELS.register_module(module=EfficientDet)
MODELS.register_module(module=DetDataPreprocessor)
DATASETS.register_module(module=CocoDetDataset)
METRICS.register_module(module=CocoMetric)
register_data_resolver('detection', resolve_detection_data)
