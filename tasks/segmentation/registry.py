"""Registers the segmentation task's classes, all in one place.

Task classes live in the library's registries (scope ``effnet_backbones``), so configs name them
``type='effnet_backbones.SegmentationModel'`` from any scope, next to
``effnet_backbones.EfficientNet``. ``tasks/segmentation/__init__.py`` imports this module, so a
config's ``custom_imports=dict(imports=['tasks.segmentation'])`` registers them.
"""
from effnet_backbones.registry import DATASETS, METRICS, MODELS

from ..engine.data import register_data_resolver

from .data_config import resolve_segmentation_data
from .data_preprocessor import SegDataPreprocessor
from .dataset import SegFolderDataset
from .losses import BCELoss, CrossEntropyLoss, DiceLoss
from .metrics import SegMetric
from .model import SegmentationModel
from .volume_dataset import VolumeSliceDataset
from .volume_metrics import VolumeSegMetric

__all__ = []  # importing the module is what registers; it exports nothing

MODELS.register_module(module=SegmentationModel)
MODELS.register_module(module=SegDataPreprocessor)
MODELS.register_module(module=DiceLoss)
MODELS.register_module(module=CrossEntropyLoss)
MODELS.register_module(module=BCELoss)
DATASETS.register_module(module=SegFolderDataset)
DATASETS.register_module(module=VolumeSliceDataset)
METRICS.register_module(module=SegMetric)
METRICS.register_module(module=VolumeSegMetric)
register_data_resolver('segmentation', resolve_segmentation_data)
