"""The models a speed benchmark compares, named ``family:arch[+option...]``:

- ``ours:b4`` our backbone (taps 1..4); options ``+me`` (memory_efficient), ``+cp`` (per-stage
  checkpointing), ``+cpb`` (per-block), ``+scse``, ``+same`` (TF padding), ``+atendw`` (PyTorch's
  own depthwise weight gradient instead of the fast CPU path of
  ``effnet_backbones.layers.depthwise``; also for ``unet`` and ``det``), ``+onednn`` (oneDNN for
  every convolution: the small-map paths of ``effnet_backbones.layers.small_conv`` off; also for
  ``unet`` and ``det``)
- ``+adamw`` / ``+adamwfast`` on any family: each training step also clips the gradient norm (5)
  and takes an AdamW step, built by MMEngine's default optimiser constructor (PyTorch's default
  implementation for the device) or by ``effnet_backbones.FastOptimWrapperConstructor`` (fused
  or multi-tensor), as the shipped schedules do (:func:`optimizer_of`)
- ``+mbNN`` on any family, with ``--compile``: compiled with an activation-memory budget of NN %
  (:func:`effnet_backbones.compile_model`; ``+mb50`` keeps half the compiler's saved activations)
- ``timm:b4`` / ``timm_tf:b4``: timm ``efficientnet_b4`` / ``tf_efficientnet_b4``, ``features_only``
- ``tv:b4``: torchvision ``efficientnet_b4().features``, taps at features[2], [3], [5], [7]
- ``unet:b4[+me]``: smp U-Net on our encoder; ``unet_smp:b4``: smp's own ``efficientnet-b4``;
  ``unet_timm:resnet50``: smp U-Net on ResNet-50 (any smp encoder name after the colon)
- ``det:d0[+me][+cp|+cpb]``: our EfficientDet network (BiFPN + class / box nets, 90 classes);
  ``effdet:d0``: the ``effdet`` package's ``tf_efficientdet_d0``, built for the benchmark's
  resolution (effdet's networks take one fixed input size)
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ['FAMILIES', 'OPTIONS', 'OPTIMIZER_OPTIONS', 'parse_candidate', 'build_candidate',
           'memory_budget_of', 'optimizer_of']

FAMILIES = ('ours', 'timm', 'timm_tf', 'tv', 'unet', 'unet_smp', 'unet_timm', 'det', 'effdet')
#: optimiser-step options -> the MMEngine optimiser constructor that builds the step
OPTIMIZER_OPTIONS = {'adamw': 'DefaultOptimWrapperConstructor',
                     'adamwfast': 'effnet_backbones.FastOptimWrapperConstructor'}
OPTIONS = ('me', 'cp', 'cpb', 'scse', 'same', 'atendw', 'onednn', *OPTIMIZER_OPTIONS)
_TV_TAPS = (2, 3, 5, 7)
_MEMORY_BUDGET = re.compile(r'^mb(\d{1,3})$')


class _TorchvisionTaps(nn.Module):
    """torchvision ``efficientnet_bX().features`` returning the outputs of features[2, 3, 5, 7]."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        import torchvision
        self.features = getattr(torchvision.models, f'efficientnet_{arch}')().features[:8]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        outs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TV_TAPS:
                outs.append(x)
        return outs


def parse_candidate(name: str) -> Tuple[str, str, List[str]]:
    """Split ``family:arch+opt+opt`` and check family and options (see the module docstring)."""
    family, _, rest = name.partition(':')
    arch, *options = rest.split('+')
    if family not in FAMILIES or not arch:
        raise ValueError(f'candidate {name!r}: expected FAMILY:ARCH[+OPTION...] with FAMILY one '
                         f'of {", ".join(FAMILIES)}')
    unknown = sorted(option for option in set(options) - set(OPTIONS)
                     if not _MEMORY_BUDGET.match(option))
    if unknown:
        raise ValueError(f'candidate {name!r}: unknown options {unknown}; valid: '
                         f'{", ".join(OPTIONS)}, mbNN (compiled memory budget NN %)')
    if len(set(options) & set(OPTIMIZER_OPTIONS)) > 1:
        raise ValueError(f'candidate {name!r}: at most one of {", ".join(OPTIMIZER_OPTIONS)}')
    budgets = _budget_percents(options)
    if len(budgets) > 1 or any(budget > 100 for budget in budgets):
        raise ValueError(f'candidate {name!r}: at most one +mbNN option, NN a percentage 0-100')
    return family, arch, options


def memory_budget_of(name: str) -> Optional[float]:
    """The compiled activation-memory budget a candidate's ``+mbNN`` option asks for (None if
    it has none)."""
    budgets = _budget_percents(parse_candidate(name)[2])
    return budgets[0] / 100 if budgets else None


def optimizer_of(name: str) -> Optional[str]:
    """The optimiser constructor a candidate's ``+adamw`` / ``+adamwfast`` option asks for (None:
    the step is forward and backward only)."""
    chosen = [OPTIMIZER_OPTIONS[option] for option in parse_candidate(name)[2]
              if option in OPTIMIZER_OPTIONS]
    return chosen[0] if chosen else None


def _budget_percents(options: List[str]) -> List[int]:
    """The NN of every ``mbNN`` option."""
    matches = (_MEMORY_BUDGET.match(option) for option in options)
    return [int(match.group(1)) for match in matches if match]


def build_candidate(name: str, resolution: Optional[int] = None) -> nn.Module:
    """Build the model a candidate name describes (see the module docstring); ``resolution`` is
    the input side, which effdet's networks are built for."""
    family, arch, options = parse_candidate(name)
    if 'atendw' in options:  # each candidate is built in its own worker process
        from effnet_backbones.layers.depthwise import set_fast_depthwise
        set_fast_depthwise(False)
    if 'onednn' in options:
        from effnet_backbones.layers.small_conv import set_small_conv
        set_small_conv(False)
    ours = dict(memory_efficient='me' in options,
                with_cp='block' if 'cpb' in options else 'cp' in options,
                scse='scse' in options, padding='same' if 'same' in options else 'symmetric')
    if family == 'ours':
        from effnet_backbones import EfficientNet
        return EfficientNet(arch, **ours)
    if family in ('timm', 'timm_tf'):
        import timm
        prefix = 'tf_' if family == 'timm_tf' else ''
        return timm.create_model(f'{prefix}efficientnet_{arch}', features_only=True,
                                 out_indices=(1, 2, 3, 4), pretrained=False)
    if family == 'tv':
        return _TorchvisionTaps(arch)
    if family == 'unet':
        from effnet_backbones import create_smp_model
        return create_smp_model('Unet', arch, classes=2, encoder_options=ours)
    if family == 'det':
        from effnet_backbones import create_efficientdet
        backbone = dict(memory_efficient=ours['memory_efficient'], with_cp=ours['with_cp'])
        return create_efficientdet(arch, backbone_options=backbone)
    if family == 'effdet':
        from effdet import create_model
        kwargs = {} if resolution is None else dict(image_size=(resolution, resolution))
        return create_model(f'tf_efficientdet_{arch}', pretrained=False, pretrained_backbone=False,
                            **kwargs)
    if family in ('unet_smp', 'unet_timm'):
        import segmentation_models_pytorch as smp
        encoder = f'efficientnet-{arch}' if family == 'unet_smp' else arch
        return smp.Unet(encoder, encoder_weights=None, classes=2)
    raise AssertionError(family)  # parse_candidate accepts only FAMILIES
