"""From an image file's pixels to the network input: channels, intensity scale, size, tensor.

Shared by the dataset (which augments between :meth:`NetworkInput.resize` and
:meth:`NetworkInput.to_tensor`) and by inference, so both see images prepared the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch

from ..common.intensity import IntensityNorm, build_intensity_norm, rgb_statistics_to_gray
from ..common.io import to_channels
from .geometry import (RESIZE_MODES, BoxMapping, ImageSize, check_img_scale, check_img_size,
                       resize_image)

__all__ = ['NetworkInput']


@dataclass(frozen=True)
class NetworkInput:
    """How raw pixels become network input.

    Args:
        in_channels: channels the model takes (gray is repeated, RGB becomes luminance for 1, and
            so do 3-value ``normalize`` statistics).
        normalize: intensity normalisation, see
            :class:`~tasks.common.intensity.IntensityNorm`.
        img_size: network input ``(H, W)`` (or one int); None keeps each image's size.
        resize: 'letterbox' (keep aspect ratio, pad bottom/right) or 'resize' (stretch).
        img_scale: instead of ``img_size``, resize every image by this factor (objects smaller
            than the recipe's smallest anchors: 2.0 makes 12 px nuclei 24 px).
    """

    in_channels: int = 3
    normalize: IntensityNorm = IntensityNorm()
    img_size: Optional[Tuple[int, int]] = None
    resize: str = 'letterbox'
    img_scale: Optional[float] = None

    @classmethod
    def build(cls, in_channels: int = 3,
              normalize: Union[None, Dict[str, Any], IntensityNorm] = None,
              img_size: Optional[ImageSize] = None, resize: str = 'letterbox',
              img_scale: Optional[float] = None) -> 'NetworkInput':
        """Check and convert config values (dicts, ints) into a :class:`NetworkInput`."""
        if resize not in RESIZE_MODES:
            raise ValueError(f'resize must be one of {RESIZE_MODES}, got {resize!r}')
        norm = build_intensity_norm(normalize)
        if in_channels == 1:
            norm = rgb_statistics_to_gray(norm)
        for key in ('mean', 'std'):
            if np.size(getattr(norm, key)) not in (1, in_channels):
                raise ValueError(f'normalize {key}={getattr(norm, key)!r} needs one value or one '
                                 f'per channel (in_channels={in_channels})')
        size = check_img_size(img_size)
        return cls(in_channels, norm, size, resize, check_img_scale(img_scale, size))

    @property
    def pad_value(self) -> np.ndarray:
        """Padding in [0, 1] units: the normalisation mean, so padding standardises to 0 (as the
        detector's own batch padding does)."""
        return np.broadcast_to(np.asarray(self.normalize.mean, np.float32), (self.in_channels,))

    def to_unit(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw ``(H, W, C)`` pixels -> float32 in [0, 1] with ``in_channels`` channels."""
        return self.normalize.to_unit(to_channels(raw, self.in_channels, path))

    def to_size(self, unit: np.ndarray) -> Tuple[np.ndarray, BoxMapping]:
        """Resize a [0, 1] image to ``img_size`` (or by ``img_scale``); the mapping takes boxes
        along."""
        return resize_image(unit, self.img_size, self.resize, self.pad_value, self.img_scale)

    def to_tensor(self, unit: np.ndarray) -> torch.Tensor:
        """Standardise a [0, 1] ``(H, W, C)`` image into a float ``(C, H, W)`` tensor."""
        if unit.ndim == 2:  # some albumentations steps drop a single channel axis
            unit = unit[:, :, None]
        image = self.normalize.standardize(unit)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
