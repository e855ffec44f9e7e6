"""Finding the EfficientNets inside two models, checking they can be paired, and naming which
source module feeds each destination module."""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import torch.nn as nn

from ..backbone import EfficientNet
from ..classifier import EfficientNetClassifier
from ..growth import TransplantError, norm_kind
from ..layers import SCSE, Conv2dSame
from ..spec import ARCHS, TAP_STAGES

BACKBONE_TYPES = (EfficientNet, EfficientNetClassifier)
Backbone = Union[EfficientNet, EfficientNetClassifier]


# ---------------------------------------------------------------------------------------------
# Finding and checking the EfficientNets inside two models
# ---------------------------------------------------------------------------------------------

def find_backbones(model: nn.Module) -> Dict[str, Backbone]:
    """The outermost EfficientNet backbones and classifiers inside ``model``, by module path
    ('' when ``model`` is one)."""
    found: Dict[str, Backbone] = {}
    for name, module in model.named_modules():
        inside = any(name.startswith(f'{outer}.') or outer == '' for outer in found)
        if isinstance(module, BACKBONE_TYPES) and not inside:
            found[name] = module
    return found


def describe_model(model: nn.Module) -> str:
    """'efficientnet_b4', 'efficientnet_b4 classifier' or 'Unet(efficientnet_b4)', for messages."""
    if isinstance(model, EfficientNet):
        return f'efficientnet_{model.arch}'
    if isinstance(model, EfficientNetClassifier):
        return f'efficientnet_{model.arch} classifier'
    archs = ', '.join(f'efficientnet_{b.arch}' for b in find_backbones(model).values())
    return f'{type(model).__name__}({archs})'


def _settings(model: Backbone) -> Dict[str, Any]:
    """The settings that change what a layer computes, read from the built modules."""
    return dict(padding='same' if isinstance(model.stem.conv, Conv2dSame) else 'symmetric',
                in_chans=model.stem.conv.in_channels, norm=norm_kind(model.stem.norm),
                norm_eps=getattr(model.stem.norm, 'eps', None),
                act=type(model.stem.act).__name__,
                output_stride=getattr(model, 'output_stride', 32))


def _tap_levels(model: Backbone) -> Tuple[int, ...]:
    """Feature levels the model returns (a classifier builds every stage, so it has them all)."""
    if isinstance(model, EfficientNet):
        return model.out_indices
    return tuple(range(len(TAP_STAGES)))


def _check_order(src: Backbone, dst: Backbone, where: str) -> None:
    if ARCHS.index(src.arch) > ARCHS.index(dst.arch):
        raise TransplantError(f'{where}the destination efficientnet_{dst.arch} is smaller than '
                              f'the source efficientnet_{src.arch}; transplanting only grows '
                              f'(Bi -> Bj with i <= j)')


def _check_settings(src: Backbone, dst: Backbone, where: str) -> None:
    ours, theirs = _settings(src), _settings(dst)
    differ = [f'{key} {ours[key]!r} (source) vs {theirs[key]!r} (destination)'
              for key in ours if ours[key] != theirs[key]]
    if differ:
        raise TransplantError(
            f'{where}cannot transplant efficientnet_{src.arch} into efficientnet_{dst.arch}: '
            f'{"; ".join(differ)}. The grown model must compute what the source computed; build '
            f'the destination with the source\'s settings (padding, in_chans, norm_layer, '
            f'norm_eps, act_layer, output_stride)')


def _check_taps(src: Backbone, dst: Backbone, where: str) -> None:
    have, want = _tap_levels(src), _tap_levels(dst)
    missing = [level for level in want if level not in have]
    if missing:
        raise TransplantError(
            f'{where}the destination efficientnet_{dst.arch} taps levels {list(want)} '
            f'(out_indices) but the source efficientnet_{src.arch} has only {list(have)}; '
            f'levels {missing} have no source. Build the destination with out_indices drawn '
            f'from {list(have)}')
    gated = _scse_levels(src)
    lost = [level for level in want if level in gated and level not in _scse_levels(dst)]
    if lost:
        raise TransplantError(
            f'{where}the source efficientnet_{src.arch} gates levels {lost} with scSE and the '
            f'destination efficientnet_{dst.arch} does not, so it cannot compute the same taps; '
            f'build the destination with scse on those taps')


def _scse_levels(model: Backbone) -> Tuple[int, ...]:
    if not isinstance(model, EfficientNet):
        return ()
    return tuple(level for level, tap in zip(model.out_indices, model.taps) if isinstance(tap, SCSE))


def _check_blocks(src: Backbone, dst: Backbone, where: str) -> None:
    """Mapped blocks share stride and skip; the blocks a stage appends have a skip."""
    for stage_id, stage in enumerate(dst.stages):
        theirs = src.stages[stage_id]
        for index, block in enumerate(stage):
            if index < len(theirs) and theirs[index].has_skip != block.has_skip:
                raise TransplantError(f'{where}stages.{stage_id}.{index} has a skip in only one '
                                      f'of source and destination')
            if index >= len(theirs) and not block.has_skip:
                raise TransplantError(f'{where}stages.{stage_id}.{index} is appended but has no '
                                      f'skip, so it cannot start as an identity')


def _check_norms(src: Backbone, dst: Backbone, where: str) -> None:
    """Norms that mix channels (GroupNorm) compute something else once their layer widens."""
    kind = _settings(dst)['norm']
    widths = lambda m: (m.plan.stem_channels, m.plan.stage_channels)  # noqa: E731
    if kind != 'batchnorm' and widths(src) != widths(dst):
        raise TransplantError(
            f'{where}efficientnet_{src.arch} -> efficientnet_{dst.arch}: their {kind} layers '
            f'normalise groups of channels, so widening a layer changes what its old channels '
            f'compute; transplanting needs per-channel norms (norm_layer bn, syncbn or frozenbn) '
            f'unless the widths are equal (b0 -> b1)')


def check_pair(src: Backbone, dst: Backbone, name: str) -> None:
    where = f'backbone {name!r}: ' if name else ''
    _check_order(src, dst, where)
    _check_settings(src, dst, where)
    _check_norms(src, dst, where)
    _check_taps(src, dst, where)
    _check_blocks(src, dst, where)


def pair_backbones(src: nn.Module, dst: nn.Module) -> Dict[str, Tuple[Backbone, Backbone]]:
    theirs, ours = find_backbones(src), find_backbones(dst)
    if not ours:
        raise TransplantError(f'the destination {type(dst).__name__} holds no EfficientNet of '
                              f'effnet_backbones; nothing to transplant into')
    if not theirs:
        raise TransplantError(f'the source {type(src).__name__} holds no EfficientNet of '
                              f'effnet_backbones; nothing to transplant from')
    if set(theirs) != set(ours):
        raise TransplantError(f'the source has EfficientNets at {sorted(theirs)} and the '
                              f'destination at {sorted(ours)}; both must be the same model '
                              f'(U-Net into U-Net, RetinaNet into RetinaNet)')
    return {name: (theirs[name], ours[name]) for name in ours}


# ---------------------------------------------------------------------------------------------
# Module names: destination -> source
# ---------------------------------------------------------------------------------------------

def join_name(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def tap_renames(src: Backbone, dst: Backbone, prefix: str) -> Dict[str, Optional[str]]:
    """Destination tap module -> source tap module (taps are numbered by slot, not by level);
    None for a scSE tap the source did not have."""
    if not isinstance(dst, EfficientNet):
        return {}
    slots = {level: slot for slot, level in enumerate(_tap_levels(src))}
    gated = _scse_levels(src)
    renames: Dict[str, Optional[str]] = {}
    for slot, level in enumerate(dst.out_indices):
        source = join_name(prefix, f'taps.{slots[level]}') if level in gated else None
        renames[join_name(prefix, f'taps.{slot}')] = source
    return renames


def renamer(table: Mapping[str, Optional[str]]) -> Callable[[str], Optional[str]]:
    """Rename a module by the longest entry of ``table`` that is it or one of its ancestors."""
    def rename(name: str) -> Optional[str]:
        for old in sorted(table, key=len, reverse=True):
            if name == old or name.startswith(f'{old}.'):
                new = table[old]
                return None if new is None else new + name[len(old):]
        return name
    return rename


