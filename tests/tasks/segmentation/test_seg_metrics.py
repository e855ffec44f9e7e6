"""SegMetric: Dice, IoU and accuracy from confusion matrices, ignore index and absent classes."""
import math

import numpy as np
import pytest
import torch

from tasks.segmentation import SegMetric, SegSample
from tasks.segmentation.metrics import confusion_matrix, dice_iou


def test_metric_dice_iou_and_ignore():
    gt = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    matrix = confusion_matrix(pred, gt, 3, 255)
    assert matrix.sum() == 6  # the two ignored pixels are not counted
    dice, iou = dice_iou(matrix)
    assert np.allclose(dice, [2 * 1 / 4, 2 * 2 / 5, 2 * 1 / 3])
    assert np.allclose(iou, [1 / 3, 2 / 3, 1 / 2])
    metric = SegMetric()
    metric.dataset_meta = dict(classes=('bg', 'a', 'b', 'absent'))
    metric.process({}, [SegSample('x', (2, 4), gt_mask=gt, pred_mask=pred)])
    results = metric.compute_metrics(metric.results)
    assert math.isnan(results['Dice.absent'])  # absent from ground truth and prediction
    assert results['mDice'] == pytest.approx(np.mean(dice))
    assert results['mIoU'] == pytest.approx(np.mean(iou))
    assert results['aAcc'] == pytest.approx(4 / 6)
