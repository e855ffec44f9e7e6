"""Segmentation losses: Dice, cross-entropy and BCE; a model sums the ones its config lists.

Each loss takes logits ``(N, C, H, W)`` and a target ``(N, H, W)`` of class indices in which
``ignore_index`` pixels (ignore labels and batch padding) count for nothing. ``C == 1`` means a
binary model with a sigmoid output.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from segmentation_models_pytorch.losses import DiceLoss as SmpDiceLoss

__all__ = ['SegLoss', 'DiceLoss', 'CrossEntropyLoss', 'BCELoss']


class SegLoss(nn.Module):
    """Base: weighting, ignore handling and the name the loss is logged under.

    Args:
        weight: factor applied to the loss before summing with the others.
        ignore_index: target value excluded from the loss.
        loss_name: key in the loss dict; MMEngine sums every key containing 'loss'.
    """

    default_name = 'loss'

    def __init__(self, weight: float = 1.0, ignore_index: int = 255,
                 loss_name: Optional[str] = None) -> None:
        super().__init__()
        self.weight = float(weight)
        self.ignore_index = ignore_index
        self.loss_name = loss_name or self.default_name
        if 'loss' not in self.loss_name:
            raise ValueError(f"loss_name must contain 'loss' so MMEngine sums it, "
                             f'got {self.loss_name!r}')

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted loss; zero (with a gradient path) when every pixel is ignored."""
        if not (target != self.ignore_index).any():
            # an all-ignored crop would give 0/0 = NaN, which the NaN guard takes for divergence
            return logits.sum() * 0.0
        return self.weight * self.compute(logits.float(), target)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The unweighted loss; subclasses implement it."""
        raise NotImplementedError


class DiceLoss(SegLoss):
    """Soft Dice over classes present in the batch (smp's DiceLoss), 1 - Dice per class, averaged.

    Args:
        smooth: added to numerator and denominator.
        log_loss: use -log(Dice) instead of 1 - Dice.
        classes: class indices to include (default all).
    """

    default_name = 'loss_dice'

    def __init__(self, smooth: float = 0.0, log_loss: bool = False,
                 classes: Optional[Sequence[int]] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        options = dict(from_logits=True, smooth=smooth, log_loss=log_loss,
                       ignore_index=self.ignore_index)
        self.multiclass = SmpDiceLoss('multiclass', classes=classes, **options)
        self.binary = SmpDiceLoss('binary', **options)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            return self.binary(logits, target.unsqueeze(1))
        return self.multiclass(logits, target)


class CrossEntropyLoss(SegLoss):
    """Softmax cross-entropy over the classes.

    Args:
        class_weight: one weight per class (e.g. to up-weight a rare class).
        label_smoothing: as in ``torch.nn.functional.cross_entropy``.
    """

    default_name = 'loss_ce'

    def __init__(self, class_weight: Optional[Sequence[float]] = None,
                 label_smoothing: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.class_weight = None if class_weight is None else \
            torch.tensor(class_weight, dtype=torch.float)
        self.label_smoothing = label_smoothing

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            raise ValueError('CrossEntropyLoss needs one logit per class; a single-logit (binary) '
                             'model takes BCELoss')
        weight = None if self.class_weight is None else self.class_weight.to(logits.device)
        return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index,
                               label_smoothing=self.label_smoothing)


class BCELoss(SegLoss):
    """Binary cross-entropy with logits: foreground vs background for a single-logit model, or
    one-vs-rest per class for a multi-logit one.

    Args:
        pos_weight: weight of positive pixels (one value, or one per class).
    """

    default_name = 'loss_bce'

    def __init__(self, pos_weight: Optional[float] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pos_weight = pos_weight

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        labels = torch.where(valid, target, torch.zeros_like(target))
        if logits.shape[1] == 1:
            onehot = (labels == 1).unsqueeze(1).float()
        else:
            onehot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).float()
        pos_weight = None if self.pos_weight is None else torch.as_tensor(
            self.pos_weight, dtype=logits.dtype, device=logits.device).reshape(-1, 1, 1)
        per_pixel = F.binary_cross_entropy_with_logits(logits, onehot, reduction='none',
                                                       pos_weight=pos_weight)
        mask = valid.unsqueeze(1).expand_as(per_pixel)
        return per_pixel[mask].mean()
