"""Segmentation losses: ignored pixels (255) count for nothing, in value and gradient."""
import math

import pytest
import torch

from effnet_backbones.registry import MODELS


@pytest.mark.parametrize('loss_type,channels', [('DiceLoss', 3), ('CrossEntropyLoss', 3),
                                                ('BCELoss', 3), ('BCELoss', 1), ('DiceLoss', 1)])
def test_losses_ignore_255(loss_type, channels):
    loss = MODELS.build(dict(type=f'effnet_backbones.{loss_type}'))
    target = torch.randint(0, 2 if channels == 1 else 3, (2, 8, 8))
    target[:, :4] = 255
    logits = torch.randn(2, channels, 8, 8, requires_grad=True)
    changed = logits.detach().clone()
    changed[:, :, :4] = 100.0  # only ignored pixels differ
    value = loss(logits, target)
    assert math.isfinite(value.item())
    assert torch.allclose(value, loss(changed, target))
    value.backward()
    assert logits.grad[:, :, :4].abs().max() == 0
    all_ignored = loss(logits, torch.full((2, 8, 8), 255))
    assert all_ignored.item() == 0.0
