"""``VolumeSegMetric``: Dice per class per volume (3-D), averaged over cases, from slice predictions.

The model predicts slices (:class:`~tasks.segmentation.volume_dataset.VolumeSliceDataset`); the
metric puts each case's slices back into a volume, optionally keeps the largest connected
component per class in 3-D, and scores every case on its own, as nnU-Net and the Decathlon do:
``Dice.<class>`` is the mean over the cases of that case's Dice, ``mDice`` / ``mFgDice`` the mean
over classes. A class absent from both a case's label and its prediction leaves that case out of
the class's mean (NaN for the case; nnU-Net's convention).
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from .metrics import confusion_matrix, dice_iou, metric_class_names
from .postprocess import keep_largest_component, largest_component_classes

__all__ = ['VolumeSegMetric', 'case_dice_table', 'CASE_KEY']

#: per-case keys, with ``per_case=True``: ``case/<case>/Dice.<class>``
CASE_KEY = 'case/{case}/Dice.{name}'


def case_dice_table(per_case: Dict[str, np.ndarray], class_names: Sequence[str]) -> str:
    """A Markdown table: one row per case, one column per foreground class, then the mean."""
    header = '| case | ' + ' | '.join(class_names[1:]) + ' | mean |'
    lines = [header, '|' + '---|' * (len(class_names) + 1)]
    for case, dice in per_case.items():
        values = [f'{v:.4f}' if np.isfinite(v) else '-' for v in dice[1:]]
        mean = np.nanmean(dice[1:]) if np.isfinite(dice[1:]).any() else float('nan')
        lines.append(f'| {case} | ' + ' | '.join(values) + f' | {mean:.4f} |')
    return '\n'.join(lines)


class VolumeSegMetric(BaseMetric):
    """Per-case 3-D Dice and IoU (``mDice``, ``mFgDice``, ``mIoU``, ``Dice.<class>``,
    ``IoU.<class>``), averaged over cases.

    Args:
        num_classes: defaults to the dataset's number of class names.
        ignore_index: label value that is not scored.
        include_background: whether class 0 counts in ``mDice`` / ``mIoU``.
        largest_component: keep only the largest 3-D connected component of each foreground class
            of a case's prediction before scoring (nnU-Net's post-processing): True for every
            class, or a list of the class indices to clean.
        per_case: also return ``case/<case>/Dice.<class>`` for every case (``tools/test.py``
            turns it on and prints them as a table).
    """

    default_prefix: Optional[str] = ''

    def __init__(self, num_classes: Optional[int] = None, ignore_index: int = 255,
                 include_background: bool = True,
                 largest_component: Union[bool, Sequence[int]] = False,
                 per_case: bool = False, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.largest_component = largest_component
        self._component_classes = largest_component_classes(largest_component,
                                                            'VolumeSegMetric.largest_component')
        self.per_case = per_case

    @property
    def class_names(self) -> List[str]:
        """Names from the dataset, or 'class<i>'."""
        return metric_class_names(self.dataset_meta, self.num_classes, 'VolumeSegMetric')

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Keep each slice's prediction and label (uint8) with its case and position."""
        for sample in data_samples:
            if sample.case is None or sample.slice_index is None:
                raise ValueError(f'{sample.img_path}: VolumeSegMetric scores slices of volumes '
                                 f'(VolumeSliceDataset); this sample names no case')
            if sample.gt_mask is None:
                raise ValueError(f'{sample.img_path} has no ground-truth label to score against')
            self.results.append((sample.case, int(sample.slice_index),
                                 sample.pred_mask.to(torch.uint8).cpu().numpy(),
                                 sample.gt_mask.to(torch.int16).cpu().numpy()))

    def _volumes(self, results: List[tuple]) -> Dict[str, tuple]:
        slices: Dict[str, dict] = defaultdict(dict)
        for case, index, pred, gt in results:
            slices[case][index] = (pred, gt)  # a slice seen twice (DDP padding) counts once
        volumes = {}
        for case in sorted(slices):
            order = sorted(slices[case])
            if order != list(range(len(order))):
                raise ValueError(f'case {case!r}: slices {order[:3]}... are not consecutive from '
                                 f'0; the metric needs every slice of a case')
            volumes[case] = (np.stack([slices[case][i][0] for i in order]),
                             np.stack([slices[case][i][1] for i in order]))
        return volumes

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        """Per-case Dice and IoU, then their means over cases and classes."""
        names = self.class_names
        num_classes = self.num_classes or len(names)
        per_case_dice, per_case_iou = {}, {}
        for case, (pred, gt) in self._volumes(results).items():
            if self._component_classes != []:
                pred = keep_largest_component(pred, self._component_classes)
            matrix = confusion_matrix(torch.from_numpy(pred.astype(np.int64)),
                                      torch.from_numpy(gt.astype(np.int64)), num_classes,
                                      self.ignore_index)
            per_case_dice[case], per_case_iou[case] = dice_iou(matrix)
        dice = np.stack(list(per_case_dice.values()))
        iou = np.stack(list(per_case_iou.values()))
        with warnings.catch_warnings():  # NaN for a class absent from every case is meant
            warnings.simplefilter('ignore', RuntimeWarning)
            class_dice, class_iou = np.nanmean(dice, axis=0), np.nanmean(iou, axis=0)
            first = 0 if self.include_background else 1
            metrics = {'mDice': float(np.nanmean(class_dice[first:])),
                       'mIoU': float(np.nanmean(class_iou[first:])),
                       'mFgDice': float(np.nanmean(class_dice[1:]))}
        for name, d, i in zip(names, class_dice, class_iou):
            metrics[f'Dice.{name}'] = float(d)
            metrics[f'IoU.{name}'] = float(i)
        if self.per_case:
            for case, values in per_case_dice.items():
                for name, value in zip(names, values):
                    metrics[CASE_KEY.format(case=case, name=name)] = float(value)
        print_log(f'per-case Dice ({len(per_case_dice)} cases'
                  f'{", largest component kept" if self.largest_component else ""}):\n'
                  + case_dice_table(per_case_dice, names), logger='current')
        return metrics

