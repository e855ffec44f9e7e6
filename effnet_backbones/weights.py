"""Pretrained weights: exact import of torchvision and timm EfficientNet checkpoints, and our own format.

The path of a checkpoint through this module:

    file | state dict | module | hub name | URL          (read_checkpoint)
      -> unwrap ('state_dict'/'model' wrappers, 'module.' prefixes)
      -> recognise the key layout: torchvision, timm (plain or tf_ port), ours   (_settle_source)
      -> rename keys to ours by module name, per block kind                      (KeyLayout)
      -> tell the variant from tensor shapes                                     (variants_of)
      -> adapt the stem to ``in_chans``, load what the model built, report the rest (load_pretrained)

timm's plain and ``tf_`` checkpoints share key names; only a name ('tf_efficientnet...' in a hub
name, URL or file path) or ``source='timm_tf'`` tells them apart, and that choice sets TF 'same'
padding and BN eps 1e-3 on the backbone (see :func:`source_defaults`).
"""
from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .spec import check_arch
from .weight_keys import (LAYOUTS, KeyLayout, describe_shapes, from_ours, layout_name,
                          recognise_layout, to_ours, variant_text, variants_of)

__all__ = [
    'SOURCES', 'FORMAT', 'WeightsError', 'LoadReport', 'Checkpoint', 'HubWeights', 'KeyLayout',
    'LAYOUTS', 'source_settings', 'source_defaults', 'read_checkpoint', 'parse_hub_name',
    'fetch_hub_weights', 'to_ours', 'convert_state_dict', 'variants_of', 'detect_variant',
    'checkpoint_config', 'adapt_stem_weight', 'load_pretrained', 'save_backbone', 'select_prefix',
]

logger = logging.getLogger(__name__)

SOURCES = ('auto', 'torchvision', 'timm', 'timm_tf', 'effnet_backbones')
#: Value of the 'format' entry that marks our own checkpoints (and safetensors metadata).
FORMAT = 'effnet_backbones'
FORMAT_VERSION = 1
SAFETENSORS_SUFFIX = '.safetensors'
TORCH_SUFFIXES = ('.pth', '.pt', '.bin', '.ckpt')
#: Keys whose absence from a checkpoint is harmless: scSE taps exist only in our models, and
#: ``num_batches_tracked`` only matters for BN with ``momentum=None``.
_MAY_STAY_AT_INIT = re.compile(r'^taps\.|\.num_batches_tracked$')
_WRAPPER_KEYS = ('state_dict', 'model', 'model_state_dict', 'module')
_STRIP_PREFIXES = ('module.', '_orig_mod.')  # DDP / DataParallel and torch.compile
_MAX_LISTED = 8

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]
# KeyLayout, LAYOUTS, to_ours and variants_of live in weight_keys and are re-exported here


class WeightsError(ValueError):
    """A checkpoint that cannot be read, recognised or loaded into the model."""


# ---------------------------------------------------------------------------------------------
# What each source needs from the backbone
# ---------------------------------------------------------------------------------------------

def _check_source(source: str) -> str:
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
    layout = layout_name(_check_source(source)) if source != 'auto' else recognise_layout(keys)
    if layout is None:
        raise WeightsError(f'not an EfficientNet state dict; first keys: {_first(keys)}')
    if target == 'auto':
        raise ValueError("target must name a layout: 'torchvision', 'timm', 'timm_tf' or "
                         "'effnet_backbones'")
    target_layout = layout_name(_check_source(target))
    ours, _, unmatched = to_ours(state_dict, layout)
    if target_layout != 'effnet_backbones':
        ours, _, more = from_ours(ours, target_layout)
        unmatched += more
    if unmatched:
        raise WeightsError(f'{len(unmatched)} keys have no counterpart in the {target_layout} '
                           f'layout: {_first(unmatched)}')
    return ours


# ---------------------------------------------------------------------------------------------
# Reading checkpoints: files, state dicts, modules
# ---------------------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    """A checkpoint read into memory, before conversion.

    Attributes:
        name: what the user gave, for messages: file path, URL, hub name or '<state dict>'.
        state_dict: tensors with the keys of the checkpoint (wrappers and 'module.' removed).
        config: constructor options stored in our own format, else None.
        hint: a source the name implies ('timm_tf' for 'tf_efficientnet...'), else None.
    """

    name: str
    state_dict: StateDict
    config: Optional[Dict[str, Any]] = None
    hint: Optional[str] = None


def _first(keys: Sequence[str], limit: int = _MAX_LISTED) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')


def _name_hint(name: str) -> Optional[str]:
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


def _unwrap(obj: Any, name: str) -> Tuple[StateDict, Optional[Dict[str, Any]]]:
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
            raise WeightsError(f"checkpoint '{name}' is not a state dict: entries {_first(others)} "
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


def _read_file(path: str) -> Checkpoint:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: '{path}'")
    raw = (_load_safetensors_file(path) if path.lower().endswith(SAFETENSORS_SUFFIX)
           else _load_torch_file(path))
    state_dict, config = _unwrap(raw, path)
    return Checkpoint(name=path, state_dict=state_dict, config=config, hint=_name_hint(path))


def _looks_like_path(text: str) -> bool:
    lowered = text.lower()
    if lowered.startswith(('timm/', 'torchvision/', 'hf-hub:', 'http://', 'https://')):
        return False
    return (lowered.endswith(TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)) or os.sep in text
            or text.startswith('.'))


# ---------------------------------------------------------------------------------------------
# Hub names and URLs (need a network; never called by the tests except with a mocked download)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HubWeights:
    """Weights to fetch: from torchvision's weight enums, timm (Hugging Face hub) or a URL.

    Attributes:
        provider: 'torchvision', 'timm' or 'url'.
        name: torchvision weight name (``EfficientNet_B4_Weights.IMAGENET1K_V1``), timm model name
            (``tf_efficientnet_b3.ns_jft_in1k``) or the URL.
        source: the source the weights come from ('auto' for a URL that does not say).
        arch: the variant the name implies, if it names one.
    """

    provider: str
    name: str
    source: str
    arch: Optional[str]


_ARCH_IN_NAME = re.compile(r'(tf_)?efficientnet[_-]?(b[0-7])(?![0-9a-z])', re.IGNORECASE)
_TORCHVISION_ENUM = re.compile(r'^efficientnet_(b[0-7])_weights\.(\w+)$', re.IGNORECASE)
_TORCHVISION_TAGS = ('IMAGENET1K_V1', 'DEFAULT')


def _torchvision_hub(arch: str, tag: str = 'IMAGENET1K_V1') -> HubWeights:
    return HubWeights('torchvision', f'EfficientNet_{arch.upper()}_Weights.{tag}', 'torchvision', arch)


def _timm_hub(model_name: str, source: str) -> HubWeights:
    match = _ARCH_IN_NAME.search(model_name)
    if source == 'auto':
        source = 'timm_tf' if match and match[1] else 'timm'
    return HubWeights('timm', model_name, source, match[2].lower() if match else None)


def _parse_named(name: str, source: str) -> Optional[HubWeights]:
    """Names such as 'timm/tf_efficientnet_b3.ns_jft_in1k' or 'torchvision/efficientnet_b4'."""
    lowered = name.lower()
    enum = _TORCHVISION_ENUM.match(name)
    if enum:
        return _torchvision_hub(enum[1].lower(), enum[2].upper())
    if lowered.startswith('hf-hub:'):
        return _timm_hub(name, source)
    if lowered.startswith('timm/'):
        return _timm_hub(name[len('timm/'):], source)
    bare = name[len('torchvision/'):] if lowered.startswith('torchvision/') else name
    match = _ARCH_IN_NAME.fullmatch(bare.split('.')[0])
    if not match:
        return None
    arch, tag = match[2].lower(), bare.partition('.')[2]
    torchvision_named = lowered.startswith('torchvision/') or tag.upper() in _TORCHVISION_TAGS
    if not match[1] and (torchvision_named or (not tag and source in ('auto', 'torchvision'))):
        return _torchvision_hub(arch, tag.upper() or 'IMAGENET1K_V1')
    return _timm_hub(bare, source)


def parse_hub_name(name: Any, source: str = 'auto',
                   arch: Optional[str] = None) -> Optional[HubWeights]:
    """Interpret ``name`` as weights to fetch, or return None if it is not such a name.

    Accepted: ``True`` (the default ImageNet weights of ``arch``: torchvision's IMAGENET1K_V1, or
    timm's ``efficientnet_bX`` / ``tf_efficientnet_bX`` when ``source`` says timm / timm_tf); a
    torchvision weights enum or its name ('EfficientNet_B4_Weights.IMAGENET1K_V1',
    'torchvision/efficientnet_b4'); a timm name ('timm/tf_efficientnet_b3.ns_jft_in1k',
    'hf-hub:timm/...', 'tf_efficientnet_b3', 'efficientnet_b3.ra2_in1k'); a bare
    'efficientnet_b4' (torchvision unless ``source`` is timm); an http(s) URL.
    """
    if name is True:
        if arch is None:
            raise ValueError('pretrained=True needs the arch of the model to pick its weights')
        arch = check_arch(arch)
        if source == 'timm':
            return _timm_hub(f'efficientnet_{arch}', 'timm')
        if source == 'timm_tf':
            return _timm_hub(f'tf_efficientnet_{arch}', 'timm_tf')
        return _torchvision_hub(arch)
    if _is_torchvision_enum(name):
        return _torchvision_hub(check_arch(type(name).__name__.split('_Weights')[0]), name.name)
    if not isinstance(name, str):
        return None
    if name.lower().startswith(('http://', 'https://')):
        match = _ARCH_IN_NAME.search(name)
        hinted = _name_hint(name) or ('torchvision' if 'download.pytorch.org' in name else None)
        return HubWeights('url', name, source if source != 'auto' else (hinted or 'auto'),
                          match[2].lower() if match else None)
    return _parse_named(name, source)


def _is_torchvision_enum(value: Any) -> bool:
    try:
        from torchvision.models import WeightsEnum
    except ImportError:  # torchvision is optional for users who only use timm or their own files
        return False
    return isinstance(value, WeightsEnum)


def _fetch_torchvision(name: str) -> Any:
    from torchvision.models import get_model_weights

    enum_name, _, tag = name.partition('.')
    arch = enum_name.split('_')[1].lower()
    weights = get_model_weights(f'efficientnet_{arch}')[tag]
    return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)


def _fetch_timm(name: str) -> Any:
    import timm

    # timm picks the hub repo, file format and tag itself; we keep only the tensors
    return timm.create_model(name, pretrained=True).state_dict()


def _fetch_url(url: str) -> Any:
    return torch.hub.load_state_dict_from_url(url, map_location='cpu', progress=True,
                                              weights_only=True)


_FETCHERS = {'torchvision': _fetch_torchvision, 'timm': _fetch_timm, 'url': _fetch_url}


def fetch_hub_weights(hub: HubWeights) -> Checkpoint:
    """Download (or take from the local hub cache) the weights ``hub`` names.

    Raises:
        WeightsError: when the download fails (no network, unknown name), saying how to get the
            file onto an offline machine.
    """
    try:
        raw = _FETCHERS[hub.provider](hub.name)
    except Exception as err:  # network stacks raise many types (URLError, HTTPError, OSError, ...)
        raise WeightsError(
            f"could not fetch pretrained weights '{hub.name}' from {hub.provider}: "
            f"{type(err).__name__}: {err}. Without internet access, download the weights on a "
            f"networked machine (see docs/weights.md), copy the file here and pass its path, "
            f"e.g. pretrained='/path/to/weights.pth'.") from err
    state_dict, config = _unwrap(raw, hub.name)
    hint = hub.source if hub.source != 'auto' else None
    return Checkpoint(name=hub.name, state_dict=state_dict, config=config, hint=hint)


# ---------------------------------------------------------------------------------------------
# From whatever the user gave to a Checkpoint
# ---------------------------------------------------------------------------------------------

#: A path, state dict, nn.Module, hub name, URL, True or a torchvision ``WeightsEnum``.
CheckpointLike = Any


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
    if isinstance(checkpoint, str) and _looks_like_path(checkpoint):
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
    where = _classify(checkpoint, _check_source(source), arch)
    if where is None:
        state_dict, config = _unwrap(checkpoint, '<state dict>')
        return Checkpoint(name='<state dict>', state_dict=state_dict, config=config)
    if isinstance(where, HubWeights):
        return fetch_hub_weights(where)
    return _read_file(where)


def _settle_source(ckpt: Checkpoint, source: str) -> str:
    """The source of ``ckpt``'s keys, checked against what the user said."""
    layout = recognise_layout(list(ckpt.state_dict))
    if layout is None:
        raise WeightsError(f"checkpoint '{ckpt.name}' is not an EfficientNet checkpoint from "
                           f"torchvision, timm or effnet_backbones; its keys are "
                           f"{_first(list(ckpt.state_dict))}")
    if source == 'auto':
        if layout == 'timm':
            return ckpt.hint if ckpt.hint == 'timm_tf' else 'timm'
        return layout
    if layout_name(source) != layout:
        raise WeightsError(f"source={source!r} but checkpoint '{ckpt.name}' has {layout} keys "
                           f"({_first(list(ckpt.state_dict), 3)}); pass source='auto' or "
                           f"source={layout!r}")
    return source


def source_defaults(pretrained: CheckpointLike, source: str = 'auto',
                    arch: str = 'b0', prefix: Optional[str] = None) -> Dict[str, Any]:
    """Settings (padding, norm_eps, norm_momentum) under which the weights reproduce their source.

    Called by :class:`EfficientNet` before building; values the user gives win. A hub name or an
    explicit ``source`` decides without reading anything; otherwise the checkpoint is read to see
    its keys (our own format returns the settings it was saved with).
    """
    _check_source(source)
    where = _classify(pretrained, source, arch)
    if isinstance(where, HubWeights) and where.source != 'auto':
        return source_settings(where.source, arch)
    if source in ('torchvision', 'timm', 'timm_tf'):
        return source_settings(source, arch)
    ckpt = read_checkpoint(pretrained, source, arch)
    if prefix:
        ckpt = select_prefix(ckpt, prefix)
    settled = _settle_source(ckpt, source)
    if settled != 'effnet_backbones':
        return source_settings(settled, arch)
    config = ckpt.config or {}
    return {key: config[key] for key in ('padding', 'norm_eps', 'norm_momentum') if key in config}


def checkpoint_config(checkpoint: CheckpointLike) -> Optional[Dict[str, Any]]:
    """Constructor options stored in one of our own checkpoints (file or dict), else None.

    Only local files and in-memory objects are inspected; hub names return None.
    """
    if isinstance(checkpoint, os.PathLike):
        checkpoint = os.fspath(checkpoint)
    if isinstance(checkpoint, str):
        if not os.path.isfile(checkpoint):
            return None
        return _config_from_saved(_read_file(checkpoint).config)
    if isinstance(checkpoint, Mapping):
        return _config_from_saved(_unwrap(checkpoint, '<state dict>')[1])
    return None


def detect_variant(checkpoint: CheckpointLike, source: str = 'auto') -> Optional[str]:
    """The variant ('b0' ... 'b7') a checkpoint holds, from its tensor shapes; None if unclear.

    Raises:
        WeightsError: if the checkpoint is not an EfficientNet checkpoint.
    """
    where = _classify(checkpoint, _check_source(source), None)
    if isinstance(where, HubWeights) and where.arch is not None:
        return where.arch  # the name says it: no download
    ckpt = read_checkpoint(checkpoint, source)
    if ckpt.config and 'arch' in ckpt.config:
        return check_arch(ckpt.config['arch'])
    ours, _, _ = to_ours(ckpt.state_dict, layout_name(_settle_source(ckpt, source)))
    fits = variants_of(ours)
    return fits[0] if len(fits) == 1 else None


# ---------------------------------------------------------------------------------------------
# in_chans
# ---------------------------------------------------------------------------------------------

def adapt_stem_weight(weight: Tensor, in_chans: int) -> Tensor:
    """Adapt an RGB stem kernel (O, 3, kH, kW) to ``in_chans`` inputs, as timm and smp do.

    1 channel: sum over RGB (a gray image gives what its RGB copy gave). N channels: repeat the
    RGB kernels cyclically and scale by 3/N, keeping the activation scale for inputs of similar
    statistics.
    """
    channels = weight.shape[1]
    if channels == in_chans:
        return weight
    if channels != 3:
        raise WeightsError(f'cannot adapt a stem with {channels} input channels to in_chans='
                           f'{in_chans}; only RGB (3-channel) stems can be adapted')
    dtype = weight.dtype
    weight = weight.float()  # summing half-precision kernels loses digits
    if in_chans == 1:
        adapted = weight.sum(dim=1, keepdim=True)
    else:
        repeats = math.ceil(in_chans / 3)
        adapted = weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (3.0 / in_chans)
    return adapted.to(dtype)


# ---------------------------------------------------------------------------------------------
# Loading into a model
# ---------------------------------------------------------------------------------------------

@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each tensor.

    Attributes:
        checkpoint: the file, URL, hub name or '<state dict>'.
        source: the source its keys were read as.
        variant: the model's variant ('b4'), which the checkpoint's shapes were checked to fit.
        loaded: our keys copied into the model.
        skipped: checkpoint tensors of parts the model does not build (deeper stages, the head,
            the classifier, taps), in our names.
        missing: model tensors the checkpoint does not hold, left at their initialisation
            (scSE taps, ``num_batches_tracked``, or anything when ``strict=False``).
        unexpected: checkpoint keys that name no EfficientNet layer, in the checkpoint's names.
        adapted: keys changed to fit the model (the stem for ``in_chans`` other than 3).
        notes: warnings about settings that make outputs differ from the source.
    """

    checkpoint: str
    source: str
    variant: str
    loaded: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    adapted: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for logs."""
        head = (f"loaded {len(self.loaded)} tensors from '{self.checkpoint}' ({self.source}, "
                f"{variant_text([self.variant])})")
        parts = [head]
        if self.skipped:
            parts.append(f'skipped {len(self.skipped)} of parts not built '
                         f'({", ".join(sorted({_top_part(k) for k in self.skipped}))})')
        if self.missing:
            parts.append(f'left {len(self.missing)} at init ({_first(self.missing, 4)})')
        if self.adapted:
            parts.append(f'adapted {", ".join(self.adapted)}')
        if self.unexpected:
            parts.append(f'ignored {len(self.unexpected)} unexpected keys ({_first(self.unexpected)})')
        return '; '.join(parts)


def _top_part(key: str) -> str:
    parts = key.split('.')
    return '.'.join(parts[:2]) if parts[0] in ('stages', 'taps') else parts[0]


@dataclass(frozen=True)
class _BuiltParts:
    """The top-level parts (stem, head, classifier, taps) and the number of stages a model built."""

    parts: FrozenSet[str]
    stages: int

    @classmethod
    def of(cls, model_keys: Mapping[str, Any]) -> '_BuiltParts':
        stages = {int(key.split('.')[1]) for key in model_keys if key.startswith('stages.')}
        return cls(frozenset(key.split('.')[0] for key in model_keys),
                   max(stages) + 1 if stages else 0)

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` lies in a part of the network that the model built."""
        parts = key.split('.')
        if parts[0] == 'stages':
            return int(parts[1]) < self.stages
        return parts[0] in self.parts


def _shape_text(value: Optional[Tensor]) -> str:
    return 'absent' if value is None else str(list(value.shape))


def _described(key: str, origin: Mapping[str, str]) -> str:
    theirs = origin.get(key, key)
    return key if theirs == key else f'{key} ({theirs} in the checkpoint)'


def _stem_adaptable(key: str, value: Tensor, target: Tensor) -> bool:
    return (key == 'stem.conv.weight' and value.dim() == 4 and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:] and value.shape[1] == 3)


def _wrong_shapes(ours: Mapping[str, Tensor], target: Mapping[str, Tensor],
                  origin: Mapping[str, str]) -> List[str]:
    """Keys present in both whose shapes differ (beyond a stem that ``in_chans`` adapts)."""
    return [f'{_described(key, origin)}: checkpoint {_shape_text(ours[key])}, '
            f'model {_shape_text(value)}'
            for key, value in target.items()
            if key in ours and ours[key].shape != value.shape
            and not _stem_adaptable(key, ours[key], value)]


def _mismatches(ours: Mapping[str, Tensor], target: Mapping[str, Tensor],
                origin: Mapping[str, str]) -> List[str]:
    """Lines describing every key of the built network that differs between checkpoint and model."""
    built = _BuiltParts.of(target)
    absent = [f'{key}: not in the checkpoint' for key in target
              if key not in ours and not _MAY_STAY_AT_INIT.search(key)]
    extra = [f'{_described(key, origin)}: not in the model' for key in ours
             if key not in target and key in built and not _MAY_STAY_AT_INIT.search(key)]
    return _wrong_shapes(ours, target, origin) + absent + extra


def _check_variant(model: nn.Module, ckpt: Checkpoint, source: str, ours: StateDict,
                   origin: Mapping[str, str], fits: List[str]) -> None:
    arch = getattr(model, 'arch', None)
    if arch in fits:
        return
    target = model.state_dict()
    lines = _mismatches(ours, target, origin)
    looks = (f'looks like {variant_text(fits)}' if fits
             else f'does not look like any EfficientNet B0-B7 ({describe_shapes(ours)})')
    raise WeightsError(
        f"checkpoint '{ckpt.name}' ({source} keys) {looks}, but the model is "
        f"efficientnet_{arch}. Keys that do not match ({len(lines)}):\n  "
        + '\n  '.join(lines[:_MAX_LISTED * 2]) + ('\n  ...' if len(lines) > _MAX_LISTED * 2 else ''))


def _adapt_stem(ours: StateDict, target: Mapping[str, Tensor], report: LoadReport) -> None:
    key = 'stem.conv.weight'
    if key in ours and key in target and ours[key].shape[1] != target[key].shape[1] \
            and _stem_adaptable(key, ours[key], target[key]):
        ours[key] = adapt_stem_weight(ours[key], target[key].shape[1])
        report.adapted.append(f'{key} (3 -> {target[key].shape[1]} input channels)')


def _sort_keys(ours: StateDict, target: Mapping[str, Tensor], report: LoadReport) -> StateDict:
    """Fill the report's loaded / skipped / missing / unexpected lists; return what to load."""
    built = _BuiltParts.of(target)
    to_load: StateDict = {}
    for key, value in ours.items():
        if key in target:
            to_load[key] = value
        elif key not in built or key.startswith('taps.'):
            report.skipped.append(key)
        elif key.endswith('num_batches_tracked'):
            continue  # the model's norm keeps no counter (frozen BN): nothing to load into
        else:
            report.unexpected.append(key)
    report.loaded = list(to_load)
    report.missing = [key for key in target if key not in ours]
    return to_load


def _required(missing: Sequence[str]) -> List[str]:
    """The missing keys that a checkpoint was expected to hold (not taps, not BN counters)."""
    return [key for key in missing if not _MAY_STAY_AT_INIT.search(key)]


def _check_missing(ckpt: Checkpoint, report: LoadReport, strict: bool) -> None:
    required = _required(report.missing)
    if required and strict:
        raise WeightsError(
            f"checkpoint '{ckpt.name}' ({report.source}, {variant_text([report.variant])}) "
            f"lacks {len(required)} tensors the model needs: {_first(required)}. The file may be "
            f"incomplete; pass strict=False to leave them at their initialisation")


def _setting_notes(model: nn.Module, source: str, config: Optional[Dict[str, Any]]) -> List[str]:
    """Differences between the model's padding / BN eps and those the weights were made with."""
    if not hasattr(model, 'padding') or not hasattr(model, 'norm_eps'):
        return []
    expected = (dict(config or {}) if source == 'effnet_backbones'
                else source_settings(source, model.arch))
    notes = []
    for name in ('padding', 'norm_eps'):
        if name in expected and getattr(model, name) != expected[name]:
            notes.append(f'{name}={getattr(model, name)!r} but the {source} weights were made with '
                         f'{name}={expected[name]!r}; outputs will differ from the source model')
    return notes


def _log(report: LoadReport) -> None:
    logger.info(report.summary())
    if report.unexpected:
        logger.warning("checkpoint '%s' (%s, %s): %d keys match no layer of the model and were "
                       "ignored: %s", report.checkpoint, report.source,
                       variant_text([report.variant]),
                       len(report.unexpected), _first(report.unexpected))
    required = _required(report.missing)
    if required:
        logger.warning("checkpoint '%s' lacks %d tensors, left at init: %s", report.checkpoint,
                       len(required), _first(required))
    for note in report.notes:
        logger.warning("checkpoint '%s': %s", report.checkpoint, note)


def select_prefix(ckpt: Checkpoint, prefix: str) -> Checkpoint:
    """The part of ``ckpt`` under ``prefix`` (e.g. 'backbone.' of a whole detector), prefix removed."""
    selected = {key[len(prefix):]: value for key, value in ckpt.state_dict.items()
                if key.startswith(prefix)}
    if not selected:
        raise WeightsError(f'{ckpt.name}: no key starts with prefix {prefix!r}; first keys: '
                           f'{_first(sorted(ckpt.state_dict))}')
    return Checkpoint(name=f'{ckpt.name} [{prefix}*]', state_dict=selected, config=None,
                      hint=ckpt.hint)


def load_pretrained(model: nn.Module, checkpoint: CheckpointLike, source: str = 'auto',
                    strict: bool = True, prefix: Optional[str] = None) -> LoadReport:
    """Load EfficientNet weights into ``model`` (an :class:`EfficientNet` backbone or classifier).

    Keys are renamed from torchvision's or timm's names to ours by module, the variant is checked
    from tensor shapes, the stem is adapted to the model's ``in_chans``, and only the parts the
    model built are loaded: deeper stages, the head and the classifier are skipped and reported.
    The report is also stored as ``model.load_report``.

    Args:
        model: the model to fill.
        checkpoint: a file (.pth, .pt, .bin, .ckpt, .safetensors), a state dict (optionally in a
            'state_dict' / 'model' wrapper, 'module.' prefixes allowed), a module, a hub name,
            a URL or ``True`` (see :func:`parse_hub_name`).
        source: 'auto' (recognise torchvision / timm / our keys; timm keys count as plain timm
            unless the name says 'tf_efficientnet'), 'torchvision', 'timm', 'timm_tf' or
            'effnet_backbones'.
        strict: raise if the checkpoint lacks tensors the model needs (other than scSE taps).
        prefix: load only the keys under this prefix, e.g. 'backbone.' of a whole detector or
            segmentation checkpoint (MMEngine's ``init_cfg=dict(..., prefix='backbone.')``).

    Raises:
        FileNotFoundError: the file does not exist.
        WeightsError: unreadable file, not an EfficientNet checkpoint, another variant, a
            ``source`` that disagrees with the keys, missing tensors, failed download.
    """
    ckpt = read_checkpoint(checkpoint, source, getattr(model, 'arch', None))
    if prefix:
        ckpt = select_prefix(ckpt, prefix)
    settled = _settle_source(ckpt, source)
    ours, origin, unmatched = to_ours(ckpt.state_dict, layout_name(settled))
    fits = variants_of(ours)
    _check_variant(model, ckpt, settled, ours, origin, fits)
    report = LoadReport(checkpoint=ckpt.name, source=settled, variant=model.arch)
    target = model.state_dict()
    _adapt_stem(ours, target, report)
    wrong = _wrong_shapes(ours, target, origin)
    if wrong:  # e.g. a 1-channel stem into an RGB model
        raise WeightsError(f"checkpoint '{ckpt.name}' ({settled}, {variant_text([report.variant])}) "
                           f"does not fit the model: {_first(wrong)}")
    to_load = _sort_keys(ours, target, report)
    report.unexpected = unmatched + [origin.get(key, key) for key in report.unexpected]
    _check_missing(ckpt, report, strict)
    report.notes = _setting_notes(model, settled, ckpt.config)
    model.load_state_dict(to_load, strict=False)
    _log(report)
    model.load_report = report
    return report


# ---------------------------------------------------------------------------------------------
# Our own format
# ---------------------------------------------------------------------------------------------

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


def _config_from_saved(config: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
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
