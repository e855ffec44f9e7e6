"""The builders: ``create_backbone`` / ``list_backbones`` (timm-style) and ``build_backbone`` (the
registry's ``EfficientNet`` entry).

Like timm's ``build_model_with_cfg`` and torchvision's builder functions, they read the weights
first, take from them the settings the weights were made with (TF ports: 'same' padding, BN eps
1e-3; our own files: every saved option), build a plain :class:`EfficientNet`, then load.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

from .backbone import EfficientNet
from .spec import ARCHS, check_arch

__all__ = ['create_backbone', 'build_backbone', 'list_backbones']

DEFAULT_NAME = 'efficientnet_b0'


def list_backbones() -> List[str]:
    """Names accepted by :func:`create_backbone`: 'efficientnet_b0' ... 'efficientnet_b7'."""
    return [f'efficientnet_{arch}' for arch in ARCHS]


def _arch_of_name(name: str) -> str:
    try:
        return check_arch(name)
    except ValueError:
        raise ValueError(f'unknown backbone {name!r}; valid: {", ".join(list_backbones())}') from None


def _weights_request(pretrained: Any, source: str, init_cfg: Optional[Dict[str, Any]]
                     ) -> Tuple[Any, str, Optional[str]]:
    """(checkpoint, source, prefix) from ``pretrained`` or MMEngine's ``init_cfg``."""
    if pretrained is False:  # timm/smp spelling of "no weights"
        pretrained = None
    if init_cfg is None:
        return pretrained, source, None
    if not isinstance(init_cfg, dict) or init_cfg.get('type') != 'Pretrained' \
            or 'checkpoint' not in init_cfg:
        raise ValueError(f"init_cfg must be dict(type='Pretrained', checkpoint=PATH_OR_NAME"
                         f"[, source=..., prefix=...]), got {init_cfg!r}")
    if pretrained is not None:
        raise ValueError(f'give pretrained={pretrained!r} or init_cfg={init_cfg!r}, not both')
    return init_cfg['checkpoint'], init_cfg.get('source', source), init_cfg.get('prefix')


def build_backbone(arch: str = 'b0', pretrained: Any = None, source: str = 'auto',
                   init_cfg: Optional[Dict[str, Any]] = None, **options: Any) -> EfficientNet:
    """Build ``EfficientNet(arch, **options)`` and load ``pretrained`` (or ``init_cfg``) into it.

    This is what ``dict(type='effnet_backbones.EfficientNet', ...)`` builds in MMEngine configs.
    The checkpoint is read once; unless given, ``padding``, ``norm_eps`` and ``norm_momentum``
    follow it (see :func:`effnet_backbones.weights.settings_of`).

    Args:
        arch: 'b0' ... 'b7'.
        pretrained: a file, state dict, hub name, URL or True (see
            :func:`effnet_backbones.weights.load_pretrained`); None or False for none.
        source: 'auto', 'torchvision', 'timm', 'timm_tf' or 'effnet_backbones'.
        init_cfg: MMEngine's ``dict(type='Pretrained', checkpoint=..., source=..., prefix=...)``;
            ``prefix`` picks the backbone out of a whole detector or segmentor checkpoint.
        **options: keyword arguments of :class:`EfficientNet`.
    """
    checkpoint, source, prefix = _weights_request(pretrained, source, init_cfg)
    if checkpoint is None:
        return EfficientNet(arch, **options)
    # weights import torchvision/timm helpers lazily; a model without weights needs none of them
    from .weights import load_pretrained, read_checkpoint, select_prefix, settings_of

    ckpt = read_checkpoint(checkpoint, source, arch)
    if prefix:
        ckpt = select_prefix(ckpt, prefix)
    for key, value in settings_of(ckpt, source, arch).items():
        if options.get(key) is None:
            options[key] = value
    model = EfficientNet(arch, **options)
    load_pretrained(model, ckpt, source=source)
    return model


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
    arch = _arch_of_name(name) if name is not None else None
    if pretrained is None:
        return build_backbone(arch or _arch_of_name(DEFAULT_NAME), **options)
    if pretrained is True and arch is None:
        raise ValueError('create_backbone(pretrained=True) needs a name, e.g. '
                         "create_backbone('efficientnet_b4', pretrained=True)")
    from .weights import checkpoint_config, detect_variant, read_checkpoint

    ckpt = read_checkpoint(pretrained, source, arch)
    saved = checkpoint_config(ckpt) or {}
    saved_arch = check_arch(saved['arch']) if 'arch' in saved else None
    if arch is not None and saved_arch is not None and arch != saved_arch:
        raise ValueError(f'create_backbone({name!r}) disagrees with {ckpt.name!r}, which holds an '
                         f'efficientnet_{saved_arch} backbone; drop the name to rebuild the saved '
                         f'backbone, or pass weights of {name}')
    arch = arch or saved_arch or detect_variant(ckpt, source)
    if arch is None:
        raise ValueError(f'cannot tell which variant {ckpt.name!r} holds; give the name, e.g. '
                         f"create_backbone('efficientnet_b4', pretrained=...)")
    merged = _merge_options(saved, options)
    if 'out_indices' in saved and 'out_indices' in merged:
        ckpt = _taps_by_level(ckpt, tuple(saved['out_indices']), tuple(merged['out_indices']))
    return build_backbone(arch, pretrained=ckpt, source=source, **merged)


def _taps_by_level(ckpt: Any, saved_levels: Tuple[int, ...], levels: Tuple[int, ...]) -> Any:
    """``ckpt`` with its tap weights renamed from the saved slots to the slots of the same levels.

    Taps are stored by slot (``taps.<position in out_indices>``); when a saved backbone is rebuilt
    with other ``out_indices``, each tap's weights must follow its level, not its position. Taps of
    levels the new backbone does not return are renamed out of the way (reported as skipped).
    """
    if saved_levels == levels:
        return ckpt
    new_slot = {level: slot for slot, level in enumerate(levels)}
    renamed = {}
    for key, value in ckpt.state_dict.items():
        parts = key.split('.')
        if parts[0] == 'taps' and parts[1].isdigit() and int(parts[1]) < len(saved_levels):
            level = saved_levels[int(parts[1])]
            parts[1] = str(new_slot[level]) if level in new_slot else f'level{level}'
        renamed['.'.join(parts)] = value
    return dataclasses.replace(ckpt, state_dict=renamed)


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
