"""``create_backbone`` and ``list_backbones``: the timm-style entry points."""
from __future__ import annotations

from typing import Any, List

from .backbone import EfficientNet
from .spec import ARCHS, check_arch

__all__ = ['create_backbone', 'list_backbones']


def list_backbones() -> List[str]:
    """Names accepted by :func:`create_backbone`: 'efficientnet_b0' ... 'efficientnet_b7'."""
    return [f'efficientnet_{arch}' for arch in ARCHS]


def create_backbone(name: str = 'efficientnet_b0', **options: Any) -> EfficientNet:
    """Build a backbone by name, e.g. ``create_backbone('efficientnet_b4', out_indices=(2, 3, 4))``.

    Args:
        name: one of :func:`list_backbones` (short names 'b4' work too).
        **options: keyword arguments of :class:`EfficientNet`.
    """
    try:
        arch = check_arch(name)
    except ValueError:
        raise ValueError(f'unknown backbone {name!r}; valid: {", ".join(list_backbones())}') from None
    if 'arch' in options:
        raise TypeError(f'create_backbone({name!r}) got arch={options["arch"]!r}; the name sets the arch')
    return EfficientNet(arch=arch, **options)
