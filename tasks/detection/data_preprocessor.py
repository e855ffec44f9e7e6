"""``DetDataPreprocessor``: moves a collated batch to the device, images kept as a list."""
from __future__ import annotations

from typing import Any, Dict

from mmengine.model import BaseDataPreprocessor

from ..common.batch import move_batch

__all__ = ['DetDataPreprocessor']


class DetDataPreprocessor(BaseDataPreprocessor):
    """Move images and samples to the model's device.

    Images stay a list: torchvision detectors pad a batch of different sizes themselves (to a
    multiple of the coarsest FPN stride), and normalisation already happened in the dataset (it
    depends on the image's bit depth and the configured intensity mode).
    """

    def forward(self, data: Dict[str, Any], training: bool = False) -> Dict[str, Any]:
        """``dict(inputs=[(C, H, W) ...], data_samples=[...])`` -> the same, on the device."""
        inputs, samples = move_batch(data, self.device, self._non_blocking)
        return dict(inputs=inputs, data_samples=samples)
