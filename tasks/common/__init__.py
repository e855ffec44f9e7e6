"""What every task shares: image I/O, intensity normalisation, albumentations steps, batches on
the device, colours and overlays, the demo data's source, and the inferencer base class.

Modules: :mod:`~tasks.common.io`, :mod:`~tasks.common.intensity`, :mod:`~tasks.common.augment`,
:mod:`~tasks.common.batch`, :mod:`~tasks.common.visualize`, :mod:`~tasks.common.demo`,
:mod:`~tasks.common.inference`. Nothing here knows a task's targets (masks, boxes); the task
packages build on it and never on each other.
"""
from .intensity import NORM_MODES, IntensityNorm, build_intensity_norm
from .io import (IMAGE_SUFFIXES, DataError, expand_inputs, image_size, list_images, read_image,
                 to_channels)

__all__ = ['NORM_MODES', 'IntensityNorm', 'build_intensity_norm', 'IMAGE_SUFFIXES', 'DataError',
           'expand_inputs', 'image_size', 'list_images', 'read_image', 'to_channels']
