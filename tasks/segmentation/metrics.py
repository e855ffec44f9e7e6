"""``SegMetric``: per-class and mean Dice and IoU over a whole split, ignoring index 255."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

__all__ = ['SegMetric', 'confusion_matrix', 'dice_iou', 'metric_class_names']


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int) -> np.ndarray:
    """``(num_classes, num_classes)`` counts, rows = ground truth, columns = prediction."""
    valid = target != ignore_index
    index = target[valid].long() * num_classes + pred[valid].long()
    counts = torch.bincount(index.flatten().cpu(), minlength=num_classes ** 2)
    return counts[:num_classes ** 2].reshape(num_classes, num_classes).numpy()


def dice_iou(matrix: np.ndarray) -> 'tuple[np.ndarray, np.ndarray]':
    """Per-class Dice and IoU from a confusion matrix; NaN for a class absent from both sides."""
    intersection = np.diag(matrix).astype(np.float64)
    total = matrix.sum(0) + matrix.sum(1)  # predicted + ground-truth pixels
    with np.errstate(divide='ignore', invalid='ignore'):
        dice = np.where(total > 0, 2 * intersection / total, np.nan)
        iou = np.where(total > 0, intersection / (total - intersection), np.nan)
    return dice, iou


def metric_class_names(dataset_meta: Optional[dict], num_classes: Optional[int],
                       who: str) -> List[str]:
    """A metric's class names: the dataset's, or 'class<i>' for ``num_classes`` classes."""
    names = (dataset_meta or {}).get('classes')
    if names:
        return list(names)
    if num_classes is None:
        raise ValueError(f'{who} needs num_classes or a dataset with class names')
    return [f'class{i}' for i in range(num_classes)]


class SegMetric(BaseMetric):
    """Dice and IoU per class and their means (``mDice``, ``mIoU``), plus pixel accuracy ``aAcc``.

    Counts are accumulated over the whole split (as mmseg does), so large and small images weigh
    by their pixels. Keys: ``mDice``, ``mIoU``, ``aAcc``, ``Dice.<class>``, ``IoU.<class>``, and
    ``mFgDice``, the mean Dice of the foreground classes (class 0 left out whatever
    ``include_background`` says; for binary masks, the foreground Dice).

    Args:
        num_classes: defaults to the dataset's number of class names.
        ignore_index: ground-truth value that is not scored.
        include_background: whether class 0 counts in the means.
    """

    # '' rather than None: keys stay unprefixed ('mDice') and MMEngine does not warn
    default_prefix: Optional[str] = ''

    def __init__(self, num_classes: Optional[int] = None, ignore_index: int = 255,
                 include_background: bool = True, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.include_background = include_background

    @property
    def class_names(self) -> List[str]:
        """Names from the dataset, or 'class<i>' when the dataset gives none."""
        return metric_class_names(self.dataset_meta, self.num_classes, 'SegMetric')

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Accumulate one confusion matrix per predicted sample."""
        num_classes = self.num_classes or len(self.class_names)
        for sample in data_samples:
            if sample.gt_mask is None:
                raise ValueError(f'{sample.img_path} has no ground-truth mask to score against')
            self.results.append(confusion_matrix(sample.pred_mask, sample.gt_mask, num_classes,
                                                 self.ignore_index))

    def compute_metrics(self, results: List[np.ndarray]) -> Dict[str, float]:
        """Means and per-class values from the summed confusion matrices."""
        matrix = np.sum(results, axis=0)
        dice, iou = dice_iou(matrix)
        first = 0 if self.include_background else 1
        metrics = {'aAcc': float(np.diag(matrix).sum() / max(matrix.sum(), 1)),
                   'mDice': float(np.nanmean(dice[first:])),
                   'mIoU': float(np.nanmean(iou[first:])),
                   'mFgDice': float(np.nanmean(dice[1:])) if len(dice) > 1 else float('nan')}
        for name, dice_value, iou_value in zip(self.class_names, dice, iou):
            metrics[f'Dice.{name}'] = float(dice_value)
            metrics[f'IoU.{name}'] = float(iou_value)
        return metrics
