"""``create_backbone`` and ``list_backbones``: the timm-style entry points."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .backbone import EfficientNet
from .spec import ARCHS, check_arch

__all__ = ['create_backbone', 'list_backbones']

DEFAULT_NAME = 'efficientnet_b0'


def list_backbones() -> List[str]:
    """Names accepted by :func:`create_backbone`: 'efficientnet_b0' ... 'efficientnet_b7'."""
    return [f'efficientnet_{arch}' for arch in ARCHS]


def _arch_of_name(name: str) -> str:
    try:
        return check_arch(name)
    except ValueError:
        raise ValueError(f'unknown backbone {name!r}; valid: {", ".join(list_backbones())}') from None


def _arch_of_weights(pretrained: Any, source: str) -> str:
    """The variant of ``pretrained`` when no name is given: from its name or tensor shapes."""
    from .weights import detect_variant

    if pretrained is True:
        raise ValueError('create_backbone(pretrained=True) needs a name, e.g. '
                         "create_backbone('efficientnet_b4', pretrained=True)")
    arch = detect_variant(pretrained, source)
    if arch is None:
        raise ValueError(f'cannot tell which variant {pretrained!r} holds; give the name, e.g. '
                         f"create_backbone('efficientnet_b4', pretrained=...)")
    return arch


def _saved_options(pretrained: Any, name: Optional[str]) -> Dict[str, Any]:
    """Options stored in our own checkpoint format (arch included), checked against ``name``."""
    from .weights import checkpoint_config

    saved = checkpoint_config(pretrained) or {}
    if name is not None and 'arch' in saved and _arch_of_name(name) != check_arch(saved['arch']):
        raise ValueError(f'create_backbone({name!r}) disagrees with {pretrained!r}, which holds an '
                         f"efficientnet_{check_arch(saved['arch'])} backbone; drop the name to "
                         f'rebuild the saved backbone, or pass weights of {name}')
    return saved


def create_backbone(name: Optional[str] = None, pretrained: Any = None, source: str = 'auto',
                    **options: Any) -> EfficientNet:
    """Build a backbone by name, e.g. ``create_backbone('efficientnet_b4', out_indices=(2, 3, 4))``.

    Args:
        name: one of :func:`list_backbones` (short names 'b4' work too). Without a name, the
            variant comes from ``pretrained``: our own checkpoints rebuild the saved backbone with
            its options; other weights are recognised by their shapes; no weights give b0.
        pretrained: weights to load: a file (.pth, .pt, .bin, .safetensors), a state dict, a hub
            name, a URL or True (see :func:`effnet_backbones.weights.load_pretrained`).
        source: 'auto', 'torchvision', 'timm', 'timm_tf' or 'effnet_backbones'.
        **options: keyword arguments of :class:`EfficientNet`; they override saved options.
    """
    if 'arch' in options:
        raise TypeError(f'create_backbone({name!r}) got arch={options["arch"]!r}; the name sets the arch')
    if pretrained is False:  # timm's spelling of "no weights"
        pretrained = None
    saved = _saved_options(pretrained, name) if pretrained is not None else {}
    if name is not None:
        arch = _arch_of_name(name)
    elif 'arch' in saved:
        arch = check_arch(saved['arch'])
    elif pretrained is not None:
        arch = _arch_of_weights(pretrained, source)
    else:
        arch = _arch_of_name(DEFAULT_NAME)
    return EfficientNet(arch=arch, pretrained=pretrained, source=source,
                        **_merge_options(saved, options))


def _merge_options(saved: Dict[str, Any], options: Dict[str, Any]) -> Dict[str, Any]:
    """Saved options overridden by the given ones; per-tap scSE flags follow their levels."""
    settings = {key: value for key, value in saved.items() if key != 'arch'}
    new_levels = options.get('out_indices')
    if isinstance(settings.get('scse'), tuple) and 'scse' not in options \
            and isinstance(new_levels, (list, tuple)):
        flags = dict(zip(settings.get('out_indices', ()), settings['scse']))
        settings['scse'] = tuple(flags.get(level, False) for level in new_levels)
    settings.update(options)
    return settings
