"""``SegSample``: what travels with each image through the data pipeline, model and metric."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

import torch

__all__ = ['SegSample']


@dataclass
class SegSample:
    """One image's metadata, ground truth and prediction.

    Attributes:
        img_path: the image file.
        img_shape: ``(H, W)`` of the image given to the model, before batch padding; predictions
            are cropped back to it.
        gt_mask: ``(H, W)`` int64 class indices, 255 = ignore; ``None`` without a mask.
        pred_mask: ``(H, W)`` int64 predicted class indices, set by the model's predict mode.
        case: for a slice of a volume, the case it belongs to (volume metrics group by it).
        slice_index: for a slice of a volume, its position along the slicing axis.
        ori_shape: ``(H, W)`` the prediction is resized to (its logits, bilinearly) after the
            crop to ``img_shape``: a slice resampled to the training spacing is scored on its
            own grid. ``None``: ``img_shape``.
    """

    img_path: str
    img_shape: Tuple[int, int]
    gt_mask: Optional[torch.Tensor] = None
    pred_mask: Optional[torch.Tensor] = None
    case: Optional[str] = None
    slice_index: Optional[int] = None
    ori_shape: Optional[Tuple[int, int]] = None

    def to(self, device: torch.device) -> 'SegSample':
        """A copy with its tensors on ``device``."""
        move = (lambda t: None if t is None else t.to(device))  # noqa: E731
        return replace(self, gt_mask=move(self.gt_mask), pred_mask=move(self.pred_mask))
