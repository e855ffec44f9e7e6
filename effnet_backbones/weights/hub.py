"""Weights named rather than given: torchvision weight enums, timm (Hugging Face hub) names, URLs.

Fetching needs a network; the tests call :func:`fetch_hub_weights` only with mocked downloads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..spec import check_arch
from .checkpoint import Checkpoint, WeightsError
from .files import name_hint, unwrap

__all__ = ['HubWeights', 'parse_hub_name', 'fetch_hub_weights']


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
        hinted = name_hint(name) or ('torchvision' if 'download.pytorch.org' in name else None)
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
    state_dict, config = unwrap(raw, hub.name)
    hint = hub.source if hub.source != 'auto' else None
    return Checkpoint(name=hub.name, state_dict=state_dict, config=config, hint=hint)

