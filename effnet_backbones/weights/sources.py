"""Which code base a checkpoint comes from (torchvision, timm, timm's TF ports, ours), what settings
its weights need, and renaming whole state dicts between the layouts."""
from __future__ import annotations

from typing import Any, Dict, Mapping

from ..spec import check_arch
from .checkpoint import Checkpoint, StateDict, WeightsError, first_keys
from .keys import from_ours, layout_name, recognise_layout, to_ours

__all__ = ['SOURCES', 'check_source', 'source_settings', 'settle_source', 'convert_state_dict']

SOURCES = ('auto', 'torchvision', 'timm', 'timm_tf', 'effnet_backbones')
Tensor = Any


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f'source must be one of {", ".join(map(repr, SOURCES))}, got {source!r}')
    return source


def source_settings(source: str, arch: str) -> Dict[str, Any]:
    """Padding and BN settings under which ``source``'s weights of ``arch`` reproduce its outputs.

    torchvision: symmetric padding, BN eps 1e-5 / momentum 0.1 for b0-b4 and 1e-3 / 0.01 for b5-b7.
    timm: symmetric, 1e-5 / 0.1 for all. timm ``tf_`` ports: TF 'same' padding, eps 1e-3,
    momentum 0.1 (timm's value for these models; TF trained with 0.01).
    """
    arch = check_arch(arch)
    if source == 'torchvision':
        deep = arch in ('b5', 'b6', 'b7')
        return dict(padding='symmetric', norm_eps=1e-3 if deep else 1e-5,
                    norm_momentum=0.01 if deep else 0.1)
    if source == 'timm':
        return dict(padding='symmetric', norm_eps=1e-5, norm_momentum=0.1)
    if source == 'timm_tf':
        return dict(padding='same', norm_eps=1e-3, norm_momentum=0.1)
    raise ValueError(f'no fixed settings for source {source!r}')


def settle_source(ckpt: Checkpoint, source: str) -> str:
    """The source of ``ckpt``'s keys, checked against what the user said."""
    layout = recognise_layout(list(ckpt.state_dict))
    if layout is None:
        raise WeightsError(f"checkpoint '{ckpt.name}' is not an EfficientNet checkpoint from "
                           f"torchvision, timm or effnet_backbones; its keys are "
                           f"{first_keys(list(ckpt.state_dict))}")
    if source == 'auto':
        if layout == 'timm':
            return ckpt.hint if ckpt.hint == 'timm_tf' else 'timm'
        return layout
    if layout_name(source) != layout:
        raise WeightsError(f"source={source!r} but checkpoint '{ckpt.name}' has {layout} keys "
                           f"({first_keys(list(ckpt.state_dict), 3)}); pass source='auto' or "
                           f"source={layout!r}")
    return source


def convert_state_dict(state_dict: Mapping[str, Tensor], source: str = 'auto',
                       target: str = 'effnet_backbones') -> StateDict:
    """Rename a whole EfficientNet state dict between torchvision, timm and our layout.

    Useful to move a classifier between code bases: a torchvision ``efficientnet_b0`` state dict
    converted to ours loads strictly into :class:`EfficientNetClassifier`, and ours converted to
    'timm' loads strictly into timm's ``efficientnet_b0`` (or ``tf_efficientnet_b0``).

    Args:
        state_dict: tensors keyed as in ``source``.
        source: 'torchvision', 'timm', 'timm_tf', 'effnet_backbones' or 'auto'.
        target: layout to produce (same names).

    Raises:
        WeightsError: if ``state_dict`` holds keys that are not EfficientNet layers (e.g. scSE taps
            exported to torchvision, which has none).
    """
    keys = list(state_dict)
    layout = layout_name(check_source(source)) if source != 'auto' else recognise_layout(keys)
    if layout is None:
        raise WeightsError(f'not an EfficientNet state dict; first keys: {first_keys(keys)}')
    if target == 'auto':
        raise ValueError("target must name a layout: 'torchvision', 'timm', 'timm_tf' or "
                         "'effnet_backbones'")
    target_layout = layout_name(check_source(target))
    ours, _, unmatched = to_ours(state_dict, layout)
    if target_layout != 'effnet_backbones':
        ours, _, more = from_ours(ours, target_layout)
        unmatched += more
    if unmatched:
        raise WeightsError(f'{len(unmatched)} keys have no counterpart in the {target_layout} '
                           f'layout: {first_keys(unmatched)}')
    return ours

