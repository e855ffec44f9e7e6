"""Overlay of a predicted class map on its image, for ``tools/infer.py``."""
from __future__ import annotations

import numpy as np

__all__ = ['PALETTE', 'to_display', 'overlay']

#: Class colours (RGB); class 0 (background) is left uncoloured.
PALETTE = np.array([(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
                    (210, 245, 60)], np.uint8)


def to_display(image: np.ndarray, percentiles: tuple = (0.5, 99.5)) -> np.ndarray:
    """A float image (H, W, C) as 8-bit RGB (H, W, 3), contrast-stretched between percentiles
    (a 16-bit image divided by 65535 would otherwise look black)."""
    low, high = np.percentile(image, percentiles)
    image = np.clip((image - low) / max(high - low, 1e-8), 0.0, 1.0)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return (image[:, :, :3] * 255 + 0.5).astype(np.uint8)


def overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend class colours into ``rgb`` where ``labels`` > 0."""
    # classes beyond the palette reuse its colours, never the background's
    colours = PALETTE[np.where(labels > 0, 1 + (labels - 1) % (len(PALETTE) - 1), 0)]
    out = rgb.astype(np.float32)
    foreground = labels > 0
    out[foreground] = (1 - alpha) * out[foreground] + alpha * colours[foreground]
    return out.astype(np.uint8)
