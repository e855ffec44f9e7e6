"""``DetSample``: what travels with each image through the data pipeline, model and metric."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Tuple

import torch

from .geometry import BoxMapping

__all__ = ['DetSample']


@dataclass
class DetSample:
    """One image's metadata, ground truth and prediction.

    Coordinates: ``gt_boxes`` are in the network's input (after resizing and augmentation);
    ``gt_coco`` and the ``pred_*`` boxes are in the original image file's pixels, which is what
    COCO evaluation and users want. ``mapping`` converts between the two.

    Attributes:
        img_path: the image file.
        img_id: the image's COCO id.
        ori_shape: ``(H, W)`` of the image file.
        img_shape: ``(H, W)`` of the image given to the network, before batch padding.
        mapping: original pixels -> network input pixels (resizing only; training augmentation
            is not recorded, and nothing needs to undo it).
        gt_boxes: ``(N, 4)`` float32 ``x1, y1, x2, y2`` training targets (crowd boxes excluded).
        gt_labels: ``(N,)`` int64 contiguous labels ``0..num_classes-1``.
        gt_coco: the image's cleaned annotations as COCO dicts (original pixels, crowd included),
            for the metric.
        pred_boxes: ``(M, 4)`` predicted ``x1, y1, x2, y2`` in original pixels.
        pred_scores: ``(M,)`` confidence.
        pred_labels: ``(M,)`` contiguous labels.
    """

    img_path: str
    img_id: int
    ori_shape: Tuple[int, int]
    img_shape: Tuple[int, int]
    mapping: BoxMapping = BoxMapping()
    gt_boxes: Optional[torch.Tensor] = None
    gt_labels: Optional[torch.Tensor] = None
    gt_coco: Optional[List[Dict[str, Any]]] = None
    pred_boxes: Optional[torch.Tensor] = None
    pred_scores: Optional[torch.Tensor] = None
    pred_labels: Optional[torch.Tensor] = None

    def to(self, device: torch.device) -> 'DetSample':
        """A copy with its tensors on ``device``."""
        move = (lambda t: None if t is None else t.to(device))  # noqa: E731
        return replace(self, gt_boxes=move(self.gt_boxes), gt_labels=move(self.gt_labels),
                       pred_boxes=move(self.pred_boxes), pred_scores=move(self.pred_scores),
                       pred_labels=move(self.pred_labels))
