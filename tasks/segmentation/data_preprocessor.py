"""``SegDataPreprocessor``: moves a collated batch to the device and pads it into one tensor."""
from __future__ import annotations

from typing import Any, Dict

from mmengine.model import BaseDataPreprocessor

from ..common.batch import move_batch
from .padding import pad_and_stack

__all__ = ['SegDataPreprocessor']


class SegDataPreprocessor(BaseDataPreprocessor):
    """Pad images of a batch to a common size (a multiple of ``size_divisor``) and stack them.

    Normalisation already happened in the dataset (it depends on the image's bit depth and the
    chosen intensity mode), so this only batches. Each sample's ``img_shape`` records its size
    before padding; the model crops its prediction back to it and pads masks with the ignore
    index, so padding never reaches a loss or a metric.

    Args:
        size_divisor: pad height and width up to a multiple of this.
        pad_value: image padding value (0 is the mean after standardising).
    """

    def __init__(self, size_divisor: int = 32, pad_value: float = 0.0,
                 non_blocking: bool = False) -> None:
        super().__init__(non_blocking=non_blocking)
        self.size_divisor = size_divisor
        self.pad_value = pad_value

    def forward(self, data: Dict[str, Any], training: bool = False) -> Dict[str, Any]:
        """``dict(inputs=[(C, H, W) ...], data_samples=[...])`` -> stacked, on the device."""
        inputs, samples = move_batch(data, self.device, self._non_blocking)
        return dict(inputs=pad_and_stack(inputs, self.size_divisor, self.pad_value),
                    data_samples=samples)
