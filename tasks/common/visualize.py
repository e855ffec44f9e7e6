"""Making predictions visible: images as 8-bit RGB, one colour per class, PNG output.

Both tasks colour a class the same way (segmentation class ``i`` and detection label ``i - 1``
share :func:`class_colours`), so a class looks alike in every overlay.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

import numpy as np

__all__ = ['PALETTE', 'class_colours', 'to_display', 'overlay', 'write_rgb']

#: Class colours (RGB); class 0 (background) is left uncoloured.
PALETTE = np.array([(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
                    (210, 245, 60)], np.uint8)


def class_colours(classes: Union[int, np.ndarray]) -> np.ndarray:
    """The RGB colour of each class index (0 = background is black).

    Classes beyond the palette reuse its colours, never the background's.
    """
    classes = np.asarray(classes)
    return PALETTE[np.where(classes > 0, 1 + (classes - 1) % (len(PALETTE) - 1), 0)]


def to_display(image: np.ndarray, percentiles: Tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """A float image (H, W, C) as 8-bit RGB (H, W, 3), contrast-stretched between percentiles
    (a 16-bit image divided by 65535 would otherwise look black)."""
    low, high = np.percentile(image, percentiles)
    image = np.clip((image - low) / max(high - low, 1e-8), 0.0, 1.0)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return (image[:, :, :3] * 255 + 0.5).astype(np.uint8)


def overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend class colours into ``rgb`` where ``labels`` > 0."""
    out = rgb.astype(np.float32)
    foreground = labels > 0
    out[foreground] = (1 - alpha) * out[foreground] + alpha * class_colours(labels[foreground])
    return out.astype(np.uint8)


def write_rgb(path: Union[str, Path], rgb: np.ndarray) -> None:
    """Write an 8-bit RGB ``(H, W, 3)`` image as PNG (or whatever ``path``'s suffix says)."""
    import cv2
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
