"""Reading checkpoint files (.pth, .pt, .bin, .ckpt, .safetensors) and unwrapping what they hold."""
from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .checkpoint import Checkpoint, StateDict, WeightsError, first_keys
from .own_format import FORMAT, SAFETENSORS_SUFFIX

__all__ = ['TORCH_SUFFIXES', 'read_file', 'unwrap', 'name_hint', 'looks_like_path']

TORCH_SUFFIXES = ('.pth', '.pt', '.bin', '.ckpt')
_WRAPPER_KEYS = ('state_dict', 'model', 'model_state_dict', 'module')
_STRIP_PREFIXES = ('module.', '_orig_mod.')  # DDP / DataParallel and torch.compile
Tensor = torch.Tensor


def name_hint(name: str) -> Optional[str]:
    # timm's tf_ ports keep timm's key names; their model name is the only mark they carry
    lowered = name.lower()
    if 'tf_efficientnet' in lowered:
        return 'timm_tf'
    return None


def _strip_prefixes(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    changed = True
    while changed and state_dict:
        changed = False
        for prefix in _STRIP_PREFIXES:
            if all(key.startswith(prefix) for key in state_dict):
                state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
                changed = True
    return state_dict


def unwrap(obj: Any, name: str) -> Tuple[StateDict, Optional[Dict[str, Any]]]:
    """The tensors of a loaded checkpoint object, and our stored config if it is our format."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise WeightsError(f"checkpoint '{name}' holds a {type(obj).__name__}, not a state dict")
    config = None
    if obj.get('format') == FORMAT:
        config = dict(obj.get('config') or {}) or None
    while not all(isinstance(value, Tensor) for value in obj.values()):
        inner = next((obj[key] for key in _WRAPPER_KEYS if isinstance(obj.get(key), Mapping)), None)
        if inner is None:
            others = [str(k) for k, v in obj.items() if not isinstance(v, Tensor)]
            raise WeightsError(f"checkpoint '{name}' is not a state dict: entries {first_keys(others)} "
                               f"are not tensors and there is no {'/'.join(_WRAPPER_KEYS)} entry")
        obj = inner
    if not obj:
        raise WeightsError(f"checkpoint '{name}' holds no tensors")
    return _strip_prefixes(dict(obj)), config


def _load_torch_file(path: str) -> Any:
    # mmap avoids reading the file twice into memory (source detection, then loading); it needs
    # the zip format that torch.save has written since 1.6, so older files are read normally
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        # a pickled class (an mmengine training checkpoint, a whole nn.Module) rather than garbage
        detail = re.search(r'Unsupported global: GLOBAL (\S+)', str(err))
        if detail:
            raise WeightsError(
                f"checkpoint '{path}' holds Python objects besides tensors ({detail[1]}), which "
                f"are not loaded for safety (torch.load(weights_only=True)). If you trust the "
                f"file, load it yourself with torch.load(path, weights_only=False) and pass the "
                f"state dict.") from None
        raise _unreadable(path, err) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError) as err:
        raise _unreadable(path, err) from None


def _unreadable(path: str, err: BaseException) -> WeightsError:
    text = str(err)
    # torch's weights-only errors open with generic advice; what failed follows this marker
    marker = 'WeightsUnpickler error:'
    if marker in text:
        text = text.split(marker, 1)[1].strip()
    detail = text.splitlines()[0][:200] if text else type(err).__name__
    return WeightsError(f"could not read checkpoint '{path}' ({os.path.getsize(path)} bytes): the "
                        f"file is corrupt, truncated or not a PyTorch / safetensors checkpoint "
                        f"({type(err).__name__}: {detail})")


def _load_safetensors_file(path: str) -> Dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework='pt', device='cpu') as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors raises its own error types (and OSError) for bad files
        raise _unreadable(path, err) from None
    if metadata.get('format') != FORMAT:
        return tensors
    try:
        config = json.loads(metadata.get('config', '{}'))
    except json.JSONDecodeError as err:
        raise WeightsError(f"checkpoint '{path}': its stored config is not valid JSON ({err})") from None
    return {'format': FORMAT, 'config': config, 'state_dict': tensors}


def read_file(path: str) -> Checkpoint:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: '{path}'")
    raw = (_load_safetensors_file(path) if path.lower().endswith(SAFETENSORS_SUFFIX)
           else _load_torch_file(path))
    state_dict, config = unwrap(raw, path)
    return Checkpoint(name=path, state_dict=state_dict, config=config, hint=name_hint(path))


def looks_like_path(text: str) -> bool:
    lowered = text.lower()
    if lowered.startswith(('timm/', 'torchvision/', 'hf-hub:', 'http://', 'https://')):
        return False
    return (lowered.endswith(TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)) or os.sep in text
            or text.startswith('.'))

