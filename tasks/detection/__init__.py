"""Object detection on MMEngine: torchvision RetinaNet, FCOS and Faster R-CNN on EfficientNet + FPN,
and EfficientDet D0-D7 on EfficientNet + BiFPN.

Importing this package registers (:mod:`tasks.detection.registry`), in the ``effnet_backbones``
scope, the models (``RetinaNet``, ``FCOS``, ``FasterRCNN``, ``EfficientDet``), their batching
(``DetDataPreprocessor``), the COCO-format dataset (``CocoDetDataset``) and the metric
(``CocoMetric``); configs name them ``'effnet_backbones.<Name>'``. Augmentation steps are
albumentations transforms named in the config (see :mod:`tasks.detection.augment`).
"""
from . import registry  # noqa: F401  (registers the classes below)
from .coco import CocoData, DataWarning, ImageRecord, load_coco
from .data_preprocessor import DetDataPreprocessor
from .dataset import CocoDetDataset
from .demo import DEMO_CLASSES, DEMO_DATA_ROOT
from .geometry import BoxMapping
from .metrics import CocoMetric
from .model import FCOS, EfficientDet, FasterRCNN, RetinaNet, TorchvisionDetector
from .sample import DetSample

__all__ = ['CocoData', 'DataWarning', 'ImageRecord', 'load_coco', 'DetDataPreprocessor',
           'CocoDetDataset', 'DEMO_CLASSES', 'DEMO_DATA_ROOT', 'BoxMapping', 'CocoMetric',
           'FCOS', 'EfficientDet', 'FasterRCNN', 'RetinaNet', 'TorchvisionDetector', 'DetSample']
