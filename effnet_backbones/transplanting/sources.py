"""A transplant source given as a checkpoint instead of a model: the backbone or classifier it holds."""
from __future__ import annotations

import os
from typing import Any

import torch.nn as nn

from ..backbone import EfficientNet
from ..classifier import EfficientNetClassifier
from ..growth import TransplantError
from .pairing import describe_model, find_backbones

# ---------------------------------------------------------------------------------------------
# A source given as a checkpoint
# ---------------------------------------------------------------------------------------------

def _classifier_from_checkpoint(checkpoint: Any, source: str) -> EfficientNetClassifier:
    from ..weights import convert_state_dict, load_pretrained, read_checkpoint, settings_of, \
        variants_of

    ckpt = read_checkpoint(checkpoint, source)
    ours = convert_state_dict(ckpt.state_dict, source)
    fits = variants_of(ours)
    if len(fits) != 1 or 'classifier.weight' not in ours:
        raise TransplantError('the checkpoint is not a whole EfficientNet classifier '
                              f'(it fits {fits or "no variant"}, classifier '
                              f'{"present" if "classifier.weight" in ours else "absent"})')
    model = EfficientNetClassifier(fits[0], num_classes=ours['classifier.weight'].shape[0],
                                   **settings_of(ckpt, source, fits[0]))
    load_pretrained(model, ckpt, source=source)
    return model


def _backbone_from_checkpoint(checkpoint: Any, dst: EfficientNet, source: str) -> EfficientNet:
    from ..factory import create_backbone
    from ..weights import checkpoint_config

    # our own files rebuild the saved backbone (taps included); others have every stage
    saved = checkpoint_config(checkpoint)
    options = {} if saved else dict(out_indices=dst.out_indices)
    return create_backbone(pretrained=checkpoint, source=source, **options)


def source_model(src: Any, dst: nn.Module, source: str) -> nn.Module:
    """``src`` itself if it is a model, else the backbone or classifier its checkpoint holds."""
    if isinstance(src, nn.Module):
        return src
    from ..weights import WeightsError

    name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else f'<{type(src).__name__}>'
    backbones = find_backbones(dst)
    if list(backbones) != ['']:
        raise TransplantError(
            f"checkpoint '{name}' -> {describe_model(dst)}: only a backbone or classifier takes a "
            f'checkpoint directly; build the trained task model (U-Net, RetinaNet) and pass it, '
            f'or use tools/transplant.py with --config')
    try:
        if isinstance(dst, EfficientNetClassifier):
            return _classifier_from_checkpoint(src, source)
        return _backbone_from_checkpoint(src, dst, source)
    except (WeightsError, TransplantError, ValueError) as err:
        raise TransplantError(f"cannot transplant checkpoint '{name}' into {describe_model(dst)}: "
                              f'{err}') from err


