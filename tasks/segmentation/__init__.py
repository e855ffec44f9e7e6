"""Semantic segmentation on MMEngine: smp decoders over our EfficientNet encoders.

Importing this package registers (:mod:`tasks.segmentation.registry`), in the ``effnet_backbones``
scope, the model (``SegmentationModel``), its batching (``SegDataPreprocessor``), the losses
(``DiceLoss``, ``CrossEntropyLoss``, ``BCELoss``), the datasets (``SegFolderDataset`` for image
folders, ``VolumeSliceDataset`` for NIfTI, NRRD and MetaImage volumes) and the metrics
(``SegMetric``, per-case 3-D ``VolumeSegMetric``); configs name them ``'effnet_backbones.<Name>'``.
"""
from . import registry  # noqa: F401  (registers the classes below)
from .data_preprocessor import SegDataPreprocessor
from .dataset import SegFolderDataset
from .demo import DEMO_CLASSES, DEMO_DATA_ROOT
from .losses import BCELoss, CrossEntropyLoss, DiceLoss
from .metrics import SegMetric
from .model import SegmentationModel
from .sample import SegSample
from .volume_dataset import VolumeSliceDataset
from .volume_metrics import VolumeSegMetric

__all__ = ['SegDataPreprocessor', 'SegFolderDataset', 'DEMO_CLASSES', 'DEMO_DATA_ROOT', 'BCELoss',
           'CrossEntropyLoss', 'DiceLoss', 'SegMetric', 'SegmentationModel', 'SegSample',
           'VolumeSliceDataset', 'VolumeSegMetric']
