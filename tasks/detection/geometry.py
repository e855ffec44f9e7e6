"""Resizing images to the network size and mapping boxes between original and network pixels.

Resizing happens once per image, before augmentation, and is recorded as a :class:`BoxMapping`, so
predictions go back to the original image's pixels exactly (COCO evaluates there, users draw
there). 'letterbox' keeps the aspect ratio and pads at the bottom and right (so no offset enters the
mapping); 'resize' stretches to the size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import torch

__all__ = ['BoxMapping', 'RESIZE_MODES', 'ImageSize', 'check_img_size', 'check_img_scale',
           'plan_resize', 'resize_image']

RESIZE_MODES = ('letterbox', 'resize')
ImageSize = Union[int, Sequence[int]]
Boxes = TypeVar('Boxes', np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class BoxMapping:
    """Per-axis scale from original pixels to network pixels (identity by default)."""

    scale_x: float = 1.0
    scale_y: float = 1.0

    def _scales(self, boxes: Boxes) -> Boxes:
        scales = (self.scale_x, self.scale_y, self.scale_x, self.scale_y)
        if isinstance(boxes, torch.Tensor):
            return boxes.new_tensor(scales)
        return np.asarray(scales, dtype=boxes.dtype if boxes.dtype.kind == 'f' else np.float32)

    def to_network(self, boxes: Boxes) -> Boxes:
        """``(N, 4)`` x1, y1, x2, y2 in original pixels -> network pixels."""
        return boxes * self._scales(boxes)

    def to_original(self, boxes: Boxes) -> Boxes:
        """``(N, 4)`` x1, y1, x2, y2 in network pixels -> original pixels."""
        return boxes / self._scales(boxes)


def check_img_size(img_size: Optional[ImageSize]) -> Optional[Tuple[int, int]]:
    """``(H, W)`` from an int or a pair; None stays None (keep the original size)."""
    if img_size is None:
        return None
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(size) != 2 or not all(isinstance(side, int) and side >= 32 for side in size):
        raise ValueError(f'img_size must be an int or (height, width) of ints >= 32 (the '
                         f'backbone\'s minimum), got {img_size!r}')
    return size  # type: ignore[return-value]


def check_img_scale(img_scale: Optional[float],
                    img_size: Optional[Tuple[int, int]] = None) -> Optional[float]:
    """A positive resize factor, or None; it cannot be combined with a fixed ``img_size``."""
    if img_scale is None:
        return None
    if img_scale == 'auto':
        raise ValueError("img_scale='auto' is chosen from the training boxes by the tools "
                         "(tools/train.py, test.py, infer.py resolve it from the config's data "
                         "or the checkpoint); give a number when building a dataset in Python")
    if isinstance(img_scale, bool) or not isinstance(img_scale, (int, float)) or not (
            0 < img_scale <= 16):
        raise ValueError(f'img_scale must be a number in (0, 16] (each image is resized by that '
                         f'factor), got {img_scale!r}')
    if img_size is not None:
        raise ValueError(f'img_scale={img_scale!r} and img_size={img_size!r} both set the input '
                         f'size; give one (img_scale keeps each image\'s own aspect and size '
                         f'ratio, img_size fits every image into one size)')
    return float(img_scale)


def plan_resize(height: int, width: int, img_size: Optional[Tuple[int, int]],
                mode: str = 'letterbox', img_scale: Optional[float] = None
                ) -> Tuple[Tuple[int, int], BoxMapping]:
    """The resized content's ``(H, W)`` and its :class:`BoxMapping` (the canvas is ``img_size``;
    with ``img_scale`` instead, the image resized by that factor, without a canvas)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f'resize must be one of {RESIZE_MODES}, got {mode!r}')
    if img_size is None:
        if img_scale is None or img_scale == 1:
            return (height, width), BoxMapping()
        new_h, new_w = max(1, round(height * img_scale)), max(1, round(width * img_scale))
        return (new_h, new_w), BoxMapping(new_w / width, new_h / height)
    target_h, target_w = img_size
    if mode == 'resize':
        new_h, new_w = target_h, target_w
    else:
        scale = min(target_h / height, target_w / width)
        new_h = min(target_h, max(1, round(height * scale)))
        new_w = min(target_w, max(1, round(width * scale)))
    # the scale of the pixel grid actually produced, so rounding does not shift boxes
    return (new_h, new_w), BoxMapping(new_w / width, new_h / height)


def resize_image(image: np.ndarray, img_size: Optional[Tuple[int, int]], mode: str = 'letterbox',
                 pad_value: float = 0.0, img_scale: Optional[float] = None
                 ) -> Tuple[np.ndarray, BoxMapping]:
    """Resize a float ``(H, W, C)`` image to ``img_size`` ('letterbox' pads bottom and right),
    or by the factor ``img_scale``."""
    import cv2
    height, width = image.shape[:2]
    (new_h, new_w), mapping = plan_resize(height, width, img_size, mode, img_scale)
    if (new_h, new_w) != (height, width):
        shrinking = new_h * new_w < height * width
        resized = cv2.resize(image, (new_w, new_h),
                             interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        image = resized.reshape(new_h, new_w, image.shape[2])  # cv2 drops a single channel axis
    if img_size is not None and (new_h, new_w) != tuple(img_size):
        canvas = np.full((*img_size, image.shape[2]), pad_value, dtype=image.dtype)
        canvas[:new_h, :new_w] = image
        image = canvas
    return image, mapping
