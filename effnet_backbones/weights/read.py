"""From whatever the user gave (path, state dict, module, hub name, URL, True) to a :class:`Checkpoint`,
and what can be told about it before building a model: its settings, options and variant."""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Union

import torch.nn as nn

from ..spec import check_arch
from .checkpoint import Checkpoint, WeightsError, first_keys
from .files import looks_like_path, read_file, unwrap
from .hub import HubWeights, fetch_hub_weights, parse_hub_name
from .keys import layout_name, to_ours, variants_of
from .own_format import config_from_saved
from .sources import check_source, settle_source, source_settings

__all__ = ['CheckpointLike', 'SETTING_KEYS', 'read_checkpoint', 'select_prefix', 'settings_of', 'source_defaults',
           'checkpoint_config', 'detect_variant']


#: A path, state dict, nn.Module, hub name, URL, True, a torchvision ``WeightsEnum`` or a
#: :class:`Checkpoint` already read.
CheckpointLike = Any
#: Constructor options that must match how the weights were made for outputs to match.
SETTING_KEYS = ('padding', 'norm_eps', 'norm_momentum')


def _check_hub_arch(hub: HubWeights, arch: Optional[str]) -> None:
    if arch is not None and hub.arch is not None and hub.arch != check_arch(arch):
        raise WeightsError(f"pretrained weights '{hub.name}' are for efficientnet_{hub.arch} but "
                           f"the model is efficientnet_{check_arch(arch)}")


def _classify(checkpoint: CheckpointLike, source: str,
              arch: Optional[str]) -> Union[str, HubWeights, None]:
    """A local file path, a HubWeights, or None for in-memory objects; raises for a missing file."""
    if isinstance(checkpoint, (Mapping, nn.Module)):
        return None
    if isinstance(checkpoint, os.PathLike):
        checkpoint = os.fspath(checkpoint)
    if isinstance(checkpoint, str) and os.path.isfile(checkpoint):
        return checkpoint
    if isinstance(checkpoint, str) and looks_like_path(checkpoint):
        raise FileNotFoundError(f"checkpoint file not found: '{checkpoint}'")
    hub = parse_hub_name(checkpoint, source, arch)
    if hub is None:
        raise WeightsError(
            f'pretrained={checkpoint!r} is neither an existing file, a state dict, a URL nor a '
            f"known hub name (e.g. 'torchvision/efficientnet_b4', "
            f"'timm/tf_efficientnet_b4.ns_jft_in1k')")
    _check_hub_arch(hub, arch)
    return hub


def read_checkpoint(checkpoint: CheckpointLike, source: str = 'auto',
                    arch: Optional[str] = None) -> Checkpoint:
    """Read a checkpoint from a file, a state dict or module, a hub name or URL (downloading).

    Args:
        checkpoint: path (.pth, .pt, .bin, .ckpt, .safetensors), state dict (optionally wrapped
            in 'state_dict' / 'model'), ``nn.Module``, hub name, URL or ``True``.
        source: as for :func:`load_pretrained`; picks the provider for ambiguous hub names.
        arch: the model's variant, to reject hub weights of another variant before downloading.
    """
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    where = _classify(checkpoint, check_source(source), arch)
    if where is None:
        state_dict, config = unwrap(checkpoint, '<state dict>')
        return Checkpoint(name='<state dict>', state_dict=state_dict, config=config)
    if isinstance(where, HubWeights):
        return fetch_hub_weights(where)
    return read_file(where)


def select_prefix(ckpt: Checkpoint, prefix: str) -> Checkpoint:
    """The part of ``ckpt`` under ``prefix`` (e.g. 'backbone.' of a whole detector), prefix removed."""
    selected = {key[len(prefix):]: value for key, value in ckpt.state_dict.items()
                if key.startswith(prefix)}
    if not selected:
        raise WeightsError(f'{ckpt.name}: no key starts with prefix {prefix!r}; first keys: '
                           f'{first_keys(sorted(ckpt.state_dict))}')
    return Checkpoint(name=f'{ckpt.name} [{prefix}*]', state_dict=selected, config=None,
                      hint=ckpt.hint)


def settings_of(ckpt: Checkpoint, source: str, arch: str) -> Dict[str, Any]:
    """Settings (padding, norm_eps, norm_momentum) under which ``ckpt`` reproduces its source.

    torchvision and timm weights get their code base's settings (:func:`source_settings`); our
    own format returns the settings it was saved with.
    """
    settled = settle_source(ckpt, check_source(source))
    if settled != 'effnet_backbones':
        return source_settings(settled, arch)
    config = ckpt.config or {}
    return {key: config[key] for key in SETTING_KEYS if key in config}


def source_defaults(pretrained: CheckpointLike, source: str = 'auto',
                    arch: str = 'b0', prefix: Optional[str] = None) -> Dict[str, Any]:
    """:func:`settings_of` for weights not read yet.

    A hub name or an explicit ``source`` decides without reading anything; otherwise the
    checkpoint is read to see its keys.
    """
    check_source(source)
    if not isinstance(pretrained, Checkpoint):
        where = _classify(pretrained, source, arch)
        if isinstance(where, HubWeights) and where.source != 'auto':
            return source_settings(where.source, arch)
        if source in ('torchvision', 'timm', 'timm_tf'):
            return source_settings(source, arch)
    ckpt = read_checkpoint(pretrained, source, arch)
    if prefix:
        ckpt = select_prefix(ckpt, prefix)
    return settings_of(ckpt, source, arch)


def checkpoint_config(checkpoint: CheckpointLike) -> Optional[Dict[str, Any]]:
    """Constructor options stored in one of our own checkpoints (file or dict), else None.

    Only local files and in-memory objects are inspected; hub names return None.
    """
    if isinstance(checkpoint, Checkpoint):
        return config_from_saved(checkpoint.config)
    if isinstance(checkpoint, os.PathLike):
        checkpoint = os.fspath(checkpoint)
    if isinstance(checkpoint, str):
        if not os.path.isfile(checkpoint):
            return None
        return config_from_saved(read_file(checkpoint).config)
    if isinstance(checkpoint, Mapping):
        return config_from_saved(unwrap(checkpoint, '<state dict>')[1])
    return None


def detect_variant(checkpoint: CheckpointLike, source: str = 'auto') -> Optional[str]:
    """The variant ('b0' ... 'b7') a checkpoint holds, from its tensor shapes; None if unclear.

    Raises:
        WeightsError: if the checkpoint is not an EfficientNet checkpoint.
    """
    if not isinstance(checkpoint, Checkpoint):
        where = _classify(checkpoint, check_source(source), None)
        if isinstance(where, HubWeights) and where.arch is not None:
            return where.arch  # the name says it: no download
    ckpt = read_checkpoint(checkpoint, source)
    if ckpt.config and 'arch' in ckpt.config:
        return check_arch(ckpt.config['arch'])
    ours, _, _ = to_ours(ckpt.state_dict, layout_name(settle_source(ckpt, source)))
    fits = variants_of(ours)
    return fits[0] if len(fits) == 1 else None

