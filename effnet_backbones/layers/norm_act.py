"""Factories that turn user-facing names ('bn', 'gn', 'swish', ...) into layer constructors."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, Mapping, Union

import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ['NORM_LAYERS', 'ACT_LAYERS', 'NormFactory', 'ActFactory', 'resolve_norm_layer',
           'resolve_act_layer', 'is_norm']

NormFactory = Callable[[int], nn.Module]
#: Channels of the layer built once to check a norm's options.
_PROBE_CHANNELS = 8
ActFactory = Callable[[], nn.Module]


class GroupNorm(nn.GroupNorm):
    """GroupNorm whose group count adapts to channel counts that ``num_groups`` does not divide."""

    def __init__(self, num_channels: int, num_groups: int = 8, eps: float = 1e-5,
                 affine: bool = True) -> None:
        groups = num_groups
        while num_channels % groups:
            groups -= 1
        super().__init__(groups, num_channels, eps=eps, affine=affine)


def _batch_norm(cls, eps: float, momentum: float, **kwargs) -> NormFactory:
    return partial(cls, eps=eps, momentum=momentum, **kwargs)


def _frozen_batch_norm(eps: float, momentum: float, **kwargs) -> NormFactory:
    del momentum  # frozen statistics never update
    return partial(FrozenBatchNorm2d, eps=eps, **kwargs)


def _group_norm(eps: float, momentum: float, num_groups: int = 8, **kwargs) -> NormFactory:
    del momentum
    return partial(GroupNorm, num_groups=num_groups, eps=eps, **kwargs)


#: name -> builder(eps, momentum, **extra) -> factory(channels). Aliases follow mmcv's names.
NORM_LAYERS: Dict[str, Callable[..., NormFactory]] = {
    'bn': partial(_batch_norm, nn.BatchNorm2d),
    'syncbn': partial(_batch_norm, nn.SyncBatchNorm),
    'gn': _group_norm,
    'frozenbn': _frozen_batch_norm,
}
_NORM_ALIASES = {'batchnorm': 'bn', 'bn2d': 'bn', 'sync_bn': 'syncbn', 'groupnorm': 'gn',
                 'frozen_bn': 'frozenbn'}

ACT_LAYERS: Dict[str, Callable[..., nn.Module]] = {
    'swish': nn.SiLU,
    'relu6': nn.ReLU6,
    'hardswish': nn.Hardswish,
    'relu': nn.ReLU,
}
_ACT_ALIASES = {'silu': 'swish', 'hard_swish': 'hardswish'}


def _norm_key(name: str) -> str:
    key = name.lower()
    return _NORM_ALIASES.get(key, key)


def resolve_norm_layer(norm_layer: Union[str, Mapping[str, Any], Callable[..., nn.Module]],
                       eps: float = 1e-5, momentum: float = 0.1) -> NormFactory:
    """Return ``factory(channels) -> nn.Module`` for a norm given by name, mmcv-style dict or callable.

    Args:
        norm_layer: 'bn', 'syncbn', 'gn', 'frozenbn'; ``dict(type='GN', num_groups=16)``; or a
            callable taking the channel count.
        eps: epsilon of BN-like norms (TF ports use 1e-3).
        momentum: running-statistics momentum of BN-like norms (PyTorch convention; TF's 0.99 is 0.01).
    """
    if callable(norm_layer) and not isinstance(norm_layer, str):
        return norm_layer
    extra: Dict[str, Any] = {}
    if isinstance(norm_layer, Mapping):
        extra = dict(norm_layer)
        if 'type' not in extra:
            raise ValueError(f'norm_layer dict needs a "type" key, got {dict(norm_layer)!r}')
        name = extra.pop('type')
        extra.pop('requires_grad', None)  # mmcv key; trainability is set by frozen_stages
        eps = extra.pop('eps', eps)
        momentum = extra.pop('momentum', momentum)
    elif isinstance(norm_layer, str):
        name = norm_layer
    else:
        raise TypeError(f'norm_layer must be a name, a dict or a callable, got {norm_layer!r}')
    key = _norm_key(str(name))
    if key not in NORM_LAYERS:
        raise ValueError(f'unknown norm_layer {name!r}; valid: {", ".join(NORM_LAYERS)}')
    factory = NORM_LAYERS[key](eps=eps, momentum=momentum, **extra)
    try:
        # partial() checks no argument: build one layer so a misspelt option fails here, named
        factory(_PROBE_CHANNELS)
    except TypeError as err:
        raise ValueError(f'invalid options {extra!r} for norm_layer {name!r}: {err}') from None
    return factory


def resolve_act_layer(act_layer: Union[str, Callable[..., nn.Module]]) -> ActFactory:
    """Return ``factory() -> nn.Module`` for an activation given by name or callable."""
    if callable(act_layer) and not isinstance(act_layer, str):
        return act_layer
    if not isinstance(act_layer, str):
        raise TypeError(f'act_layer must be a name or a callable, got {act_layer!r}')
    key = _ACT_ALIASES.get(act_layer.lower(), act_layer.lower())
    if key not in ACT_LAYERS:
        raise ValueError(f'unknown act_layer {act_layer!r}; valid: {", ".join(ACT_LAYERS)}')
    return ACT_LAYERS[key]


_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, FrozenBatchNorm2d)


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer (BN, SyncBN, GN, frozen BN)."""
    return isinstance(module, _NORM_TYPES)
