"""Our own checkpoint format: tensors plus the backbone's constructor options, so a file rebuilds it.

``.safetensors`` files keep the options as JSON metadata; other suffixes hold
``{'format', 'format_version', 'config', 'state_dict'}`` written with ``torch.save``.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn

__all__ = ['FORMAT', 'FORMAT_VERSION', 'SAFETENSORS_SUFFIX', 'save_backbone', 'config_from_saved']

logger = logging.getLogger(__name__)

#: Value of the 'format' entry that marks our own checkpoints (and safetensors metadata).
FORMAT = 'effnet_backbones'
FORMAT_VERSION = 1
SAFETENSORS_SUFFIX = '.safetensors'


_PLAIN = (str, int, float, bool, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _plain_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    plain = {}
    for key, value in config.items():
        if _is_plain(value):
            plain[key] = list(value) if isinstance(value, tuple) else value
        else:
            logger.warning('save_backbone: option %s=%r is not plain data and is not saved; pass '
                           'it again when rebuilding from the file', key, value)
    return plain


def config_from_saved(config: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    if not config:
        return None
    restored = dict(config)
    for key in ('out_indices', 'scse'):  # JSON and our torch format store these as lists
        if isinstance(restored.get(key), list):
            restored[key] = tuple(restored[key])
    return restored


def save_backbone(model: nn.Module, path: Union[str, 'os.PathLike[str]']) -> None:
    """Save a backbone with its options, so ``create_backbone(pretrained=path)`` rebuilds it.

    ``.safetensors`` files keep the options as JSON metadata; other suffixes are written with
    ``torch.save`` as ``{'format', 'format_version', 'config', 'state_dict'}``, readable with
    ``torch.load(weights_only=True)``. Options that are not plain data (a callable ``norm_layer``)
    are left out with a warning.
    """
    config = getattr(model, 'config', None)
    if not isinstance(config, Mapping):
        raise TypeError(f'save_backbone needs an EfficientNet backbone (with .config), got '
                        f'{type(model).__name__}')
    path = os.fspath(path)
    plain = _plain_config(config)
    state_dict = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    if path.lower().endswith(SAFETENSORS_SUFFIX):
        from safetensors.torch import save_file

        save_file(state_dict, path, metadata={'format': FORMAT, 'format_version': str(FORMAT_VERSION),
                                              'config': json.dumps(plain)})
    else:
        torch.save({'format': FORMAT, 'format_version': FORMAT_VERSION, 'config': plain,
                    'state_dict': state_dict}, path)
    logger.info("saved efficientnet_%s backbone to '%s'", plain.get('arch'), path)

