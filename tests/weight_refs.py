"""Reference EfficientNets (torchvision, timm, timm tf_) with random weights for the weight tests.

Reference models are built with random weights (no download). Their BN layers get random affine
parameters and running statistics measured on a batch, so that every tensor matters: a key loaded
into the wrong place, a wrong BN eps or a wrong padding shows as a difference in the taps.
No test touches the network: hub downloads are replaced by monkeypatched functions.
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List

import timm
import torch
import torch.nn as nn
import torchvision
from timm.models._manipulate import adapt_input_conv

from effnet_backbones import (EfficientNet)
from reference import ARCHS

SOURCES = ('torchvision', 'timm', 'timm_tf')
LEVELS = (0, 1, 2, 3, 4)
TORCHVISION_TAPS = (1, 2, 3, 5, 7)  # features[i] giving levels 0..4 (issue: [2], [3], [5], [7])
TOL = 1e-5
SMALL_INPUT_ARCHS = ('b5', 'b6', 'b7')


def input_size(arch):
    # odd, non-square sides make TF 'same' padding asymmetric, so a padding mistake shows
    return (65, 64) if arch in SMALL_INPUT_ARCHS else (81, 98)


def max_diff(ours: List[torch.Tensor], theirs: List[torch.Tensor]) -> float:
    assert [a.shape for a in ours] == [b.shape for b in theirs]
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs))


# ----------------------------------------------------------------------------- reference models
def build_reference(source: str, arch: str) -> nn.Module:
    """A randomly initialised torchvision / timm classifier (never downloads)."""
    if source == 'torchvision':
        # no stochastic depth, so that the calibration pass in train mode matches eval mode
        return torchvision.models.get_model(f'efficientnet_{arch}', weights=None,
                                            stochastic_depth_prob=0.0)
    prefix = 'tf_' if source == 'timm_tf' else ''
    return timm.create_model(f'{prefix}efficientnet_{arch}', pretrained=False)


@torch.no_grad()
def randomise(model: nn.Module, seed: int, batch: torch.Tensor) -> nn.Module:
    """Random BN affine and conv/linear biases, then BN statistics measured on ``batch``.

    Statistics measured on the very inputs the tests use keep every tap of order 1 (a random
    network with mismatched statistics blows up to 1e6 and amplifies rounding past 1e-5).
    """
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.uniform_(0.5, 1.5, generator=gen)
            module.bias.normal_(0.0, 0.2, generator=gen)
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.normal_(0.0, 0.2, generator=gen)
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the statistics to its own
    model.train()
    model(batch)
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
        bn.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
    return model.eval()


def stem_module(source: str) -> str:
    return 'features.0.0' if source == 'torchvision' else 'conv_stem'


def tap_modules(source: str, model: nn.Module) -> List[str]:
    """Modules giving levels 0..4: torchvision ``features[1,2,3,5,7]``; for timm the modules its
    ``features_only`` wrapper returns (``feature_info``: blocks 0, 1, 2, 4, 6)."""
    if source == 'torchvision':
        return [f'features.{i}' for i in TORCHVISION_TAPS]
    return [info['module'] for info in model.feature_info]


@torch.no_grad()
def reference_taps(source: str, model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """The source model's taps at levels 0..4 for ``x``.

    Inputs with other than 3 channels run with the stem adapted by timm's ``adapt_input_conv``
    (what timm does for ``in_chans`` when it loads pretrained weights).
    """
    conv = model.get_submodule(stem_module(source))
    rgb_weight = conv.weight
    conv.weight = nn.Parameter(adapt_input_conv(x.shape[1], rgb_weight.detach()))
    taps: List[torch.Tensor] = []
    hooks = [model.get_submodule(name).register_forward_hook(lambda m, i, o: taps.append(o))
             for name in tap_modules(source, model)]
    try:
        model(x)
    finally:
        conv.weight = rgb_weight
        for hook in hooks:
            hook.remove()
    return taps


@dataclass
class Reference:
    source: str
    arch: str
    model: nn.Module
    state_dict: Dict[str, torch.Tensor]
    x: torch.Tensor
    taps: List[torch.Tensor]
    gray: torch.Tensor
    gray_taps: List[torch.Tensor]


def make_reference(source: str, arch: str) -> Reference:
    seed = ARCHS.index(arch) * 10 + SOURCES.index(source)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, *input_size(arch), generator=gen)
    gray = torch.randn(1, 1, *input_size(arch), generator=gen)
    other = torch.randn(1, 3, *input_size(arch), generator=gen)
    batch = torch.cat([x, gray.repeat(1, 3, 1, 1), other])
    model = randomise(build_reference(source, arch), seed, batch)
    return Reference(source, arch, model, model.state_dict(), x, reference_taps(source, model, x),
                     gray, reference_taps(source, model, gray))


@lru_cache(maxsize=None)
def cached_reference(source: str, arch: str) -> Reference:
    """References for the single-variant tests below (b0-b4 only, to keep memory small)."""
    return make_reference(source, arch)


def ours_taps(model: EfficientNet, x: torch.Tensor) -> List[torch.Tensor]:
    with torch.no_grad():
        return model.eval()(x)


def explicit_source(source: str) -> str:
    # timm's tf_ state dicts have the same keys as plain timm: 'auto' cannot tell them apart
    return 'timm_tf' if source == 'timm_tf' else 'auto'


