"""Channel maps that are not leading slices (decoders that concatenate growing tensors), and the
identities that make blocks and gates the destination adds start as no-ops."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ..growth import ChannelMap, Growth, MapPair, TransplantError
from ..layers import SCSE
from .pairing import Backbone, describe_model, join_name, tap_renames

#: rule(source model, destination model) -> {destination module: (input map, output map)} for
#: layers whose growing inputs are not a leading slice (a concatenation of two growing tensors).
MapRule = Callable[[nn.Module, nn.Module], Dict[str, MapPair]]


# ---------------------------------------------------------------------------------------------
# Channel maps that are not leading slices (task models)
# ---------------------------------------------------------------------------------------------

def _unet_block_widths(unet: nn.Module) -> List[Tuple[int, int]]:
    """(upsampled input, skip) channels of each U-Net decoder block, following smp's UnetDecoder."""
    encoder = list(unet.encoder.out_channels)[1:][::-1]
    decoded = [block.conv2[0].out_channels for block in unet.decoder.blocks]
    inputs = [encoder[0]] + decoded[:-1]
    skips = list(encoder[1:]) + [0] * len(decoded)
    return list(zip(inputs, skips))


def _unet_maps(src: nn.Module, dst: nn.Module, prefix: str) -> Dict[str, MapPair]:
    """Decoder blocks concatenate [upsampled, skip]: both grow, so their channels map run by run
    into conv1 and the scSE attention on the concatenation."""
    maps: Dict[str, MapPair] = {}
    pairs = zip(_unet_block_widths(src), _unet_block_widths(dst))
    for index, ((src_up, src_skip), (dst_up, dst_skip)) in enumerate(pairs):
        joined = ChannelMap.concat([ChannelMap.leading(src_up, dst_up),
                                    ChannelMap.leading(src_skip, dst_skip)])
        block = join_name(prefix, f'decoder.blocks.{index}')
        attention = f'{block}.attention1.attention'
        maps.update({f'{block}.conv1.0': (joined, None), f'{attention}.cSE.1': (joined, None),
                     f'{attention}.cSE.3': (None, joined), f'{attention}.sSE.0': (joined, None)})
    return maps


def smp_unet_rule(src: nn.Module, dst: nn.Module) -> Dict[str, MapPair]:
    """Channel maps of every smp U-Net inside ``dst`` (matched by path in ``src``)."""
    try:
        from segmentation_models_pytorch import Unet
    except ImportError:  # smp is optional for backbone-only users
        return {}
    theirs = dict(src.named_modules())
    maps: Dict[str, MapPair] = {}
    for name, module in dst.named_modules():
        if isinstance(module, Unet) and isinstance(theirs.get(name), Unet):
            maps.update(_unet_maps(theirs[name], module, name))
    return maps


#: smp decoders whose exact growth is known: U-Net through :func:`smp_unet_rule`; the others read
#: one growing tensor per layer. Unet++, MAnet, PSPNet and Linknet concatenate or transpose growing
#: features in ways no rule describes yet, so ``mode='exact'`` and ``'net2wider'`` refuse them.
SMP_EXACT = ('Unet', 'FPN', 'DeepLabV3', 'DeepLabV3Plus', 'Segformer')


def check_smp_decoders(dst: nn.Module, mode: str = 'exact') -> None:
    """Refuse smp decoders outside :data:`SMP_EXACT`: ``mode`` ('exact', 'net2wider') could not
    keep their function."""
    try:
        from segmentation_models_pytorch.base import SegmentationModel
    except ImportError:
        return
    for name, module in dst.named_modules():
        if isinstance(module, SegmentationModel) and type(module).__name__ not in SMP_EXACT:
            raise TransplantError(
                f'{describe_model(module)}{f" at {name!r}" if name else ""}: {mode} transplanting of '
                f'smp {type(module).__name__} is not supported (supported: {", ".join(SMP_EXACT)}); '
                f"use mode='plain' to copy the overlapping slices only")


#: Rules for task models whose layers concatenate growing tensors. Decoders, FPNs and heads that
#: only read one growing tensor per layer (torchvision FPN and RetinaNet, smp FPN, DeepLabV3+)
#: need none: the leading slice is right for them.
MAP_RULES: List[MapRule] = [smp_unet_rule]


def channel_maps(src: nn.Module, dst: nn.Module) -> Dict[str, MapPair]:
    maps: Dict[str, MapPair] = {}
    for rule in MAP_RULES:
        maps.update(rule(src, dst))
    return maps


# ---------------------------------------------------------------------------------------------
# Identities for what the destination adds
# ---------------------------------------------------------------------------------------------

def _zero_affine(module: nn.Module, name: str, growth: Dict[str, Growth]) -> None:
    """Zero ``module``'s weight and bias and count them in ``growth[name]``."""
    for tensor in (module.weight, module.bias):
        if tensor is not None:
            tensor.zero_()
            growth[name].zeroed += tensor.numel()


def stage_sources(src: Backbone, dst: Backbone) -> List[Tuple[Optional[int], ...]]:
    """For each destination stage, the source block feeding each of its blocks (None: appended)."""
    return [tuple(k if k < len(src.stages[s]) else None for k in range(len(stage)))
            for s, stage in enumerate(dst.stages)]


@torch.no_grad()
def add_identities(src: Backbone, dst: Backbone, prefix: str, growth: Dict[str, Growth]) -> None:
    """Make what the destination adds start as identities, counting the zeros in ``growth``.

    An appended block has a skip, so a residual branch that ends in a norm with weight and bias
    zero leaves it an identity. A new scSE tap computes ``x * cSE + x * sSE``; with the last
    convolution of each gate zero both gates are sigmoid(0) = 0.5, and x/2 + x/2 = x exactly.
    """
    for stage_id, sources in enumerate(stage_sources(src, dst)):
        for index, source in enumerate(sources):
            if source is None:
                name = f'stages.{stage_id}.{index}.project.norm'
                _zero_affine(dst.get_submodule(name), join_name(prefix, name), growth)
    for tap_name, source in tap_renames(src, dst, '').items():
        if source is None and isinstance(dst.get_submodule(tap_name), SCSE):
            for gate in ('channel_gate.3', 'spatial_gate.0'):
                name = f'{tap_name}.{gate}'
                _zero_affine(dst.get_submodule(name), join_name(prefix, name), growth)


