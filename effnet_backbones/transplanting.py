"""Progressive transplanting: grow a trained EfficientNet Bi (or a model built on one) into Bj, j >= i.

Widths only grow along the family and kernel sizes are equal, so every source tensor fits in the
leading slice of its destination tensor. In ``'exact'`` mode (the default) the grown model computes,
on the source's channels, exactly what the source computed at the moment of transplant:

- each source tensor (weights, biases, BN affine parameters *and* running statistics) is copied
  into the leading slice of the destination tensor (U-Net decoder inputs, which concatenate two
  growing tensors, run by run);
- weights from channels the source did not have into channels it had are zeroed, in every
  non-depthwise convolution and linear layer (pointwise expansion, projection, SE reduce and
  expand, scSE gates, decoder convolutions, heads); depthwise convolutions and BN act per channel;
- blocks a deeper variant appends to a stage start as identities: they all have a skip, and the
  last norm of their residual branch gets weight and bias zero;
- scSE on a tap that the source did not gate starts as an identity (both gates at 0.5).

New channels and blocks keep the destination's initialisation elsewhere, so they learn from the
first step (an appended block's branch first through its last norm's weight and bias, which get
gradients at once; its other weights from the second step).

``'plain'`` mode only copies the overlapping slices, for comparison.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .backbone import EfficientNet
from .classifier import EfficientNetClassifier
from .growth import ChannelMap, Growth, MapPair, TransplantError, grow_modules, norm_kind
from .layers import SCSE, Conv2dSame
from .spec import ARCHS, TAP_STAGES

__all__ = ['MODES', 'SMP_EXACT', 'TransplantError', 'PartReport', 'TransplantReport',
           'transplant', 'grow_backbone', 'find_backbones', 'max_difference', 'MAP_RULES']

MODES = ('exact', 'plain')
BACKBONE_TYPES = (EfficientNet, EfficientNetClassifier)
Backbone = Union[EfficientNet, EfficientNetClassifier]
#: rule(source model, destination model) -> {destination module: (input map, output map)} for
#: layers whose growing inputs are not a leading slice (a concatenation of two growing tensors).
MapRule = Callable[[nn.Module, nn.Module], Dict[str, MapPair]]


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PartReport:
    """One part of the destination (stem, a stage, taps, decoder, ...), counted in parameter elements.

    Attributes:
        name: module path of the part ('stages.3', 'encoder.backbone.stem', 'decoder').
        params: parameter elements of the destination part.
        copied: of them, elements that now hold source values.
        zeroed: of them, elements set to zero to keep the source's channels and outputs exact.
        sources: for a stage, the source block that fed each destination block, in order; None
            marks a block the destination appends, which starts as an identity.
    """

    name: str
    params: int
    copied: int
    zeroed: int
    sources: Tuple[Optional[int], ...] = ()

    @property
    def share(self) -> float:
        """Share of the part's destination parameters that came from the source."""
        return self.copied / self.params if self.params else 0.0

    @property
    def is_stage(self) -> bool:
        """Whether the part is a backbone stage (and ``sources`` maps its blocks)."""
        return bool(self.sources)


@dataclass(frozen=True)
class TransplantReport:
    """What :func:`transplant` did: per part, the block mapping and the share of copied parameters.

    The parts partition the destination's parameters, so their ``params`` add up to the
    destination's parameter count and their ``copied`` to :attr:`copied`.
    """

    source: str
    destination: str
    mode: str
    parts: Tuple[PartReport, ...]

    @property
    def params(self) -> int:
        """Parameter elements of the destination."""
        return sum(part.params for part in self.parts)

    @property
    def copied(self) -> int:
        """Destination parameter elements that came from the source."""
        return sum(part.copied for part in self.parts)

    @property
    def zeroed(self) -> int:
        """Destination parameter elements zeroed for exactness."""
        return sum(part.zeroed for part in self.parts)

    @property
    def share(self) -> float:
        """Share of the destination's parameters that came from the source."""
        return self.copied / self.params if self.params else 0.0

    @property
    def stages(self) -> List[PartReport]:
        """The backbone stages, in order."""
        return [part for part in self.parts if part.is_stage]

    def part(self, name: str) -> PartReport:
        """The part named ``name`` ('stages.2', 'decoder', ...)."""
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(f'no part {name!r}; parts: {", ".join(p.name for p in self.parts)}')

    def summary(self) -> str:
        """A plain-text table, one row per part."""
        rows = [f'transplant {self.source} -> {self.destination} ({self.mode}): '
                f'{self.copied:,} of {self.params:,} parameters from the source '
                f'({100 * self.share:.1f}%), {self.zeroed:,} zeroed',
                f'{"part":<32} {"params":>12} {"copied":>12} {"share":>7}  blocks (dst <- src)']
        for part in self.parts:
            blocks = ' '.join(f'{dst}<-{"id" if src is None else src}'
                              for dst, src in enumerate(part.sources))
            rows.append(f'{part.name:<32} {part.params:>12,} {part.copied:>12,} '
                        f'{100 * part.share:>6.1f}%  {blocks}')
        return '\n'.join(rows)

    def to_dict(self) -> Dict[str, Any]:
        """Plain data for JSON."""
        return dict(source=self.source, destination=self.destination, mode=self.mode,
                    params=self.params, copied=self.copied, zeroed=self.zeroed, share=self.share,
                    parts=[dict(name=p.name, params=p.params, copied=p.copied, zeroed=p.zeroed,
                                share=p.share, sources=list(p.sources)) for p in self.parts])


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


def _describe(model: nn.Module) -> str:
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


def _check_pair(src: Backbone, dst: Backbone, name: str) -> None:
    where = f'backbone {name!r}: ' if name else ''
    _check_order(src, dst, where)
    _check_settings(src, dst, where)
    _check_norms(src, dst, where)
    _check_taps(src, dst, where)
    _check_blocks(src, dst, where)


def _pair_backbones(src: nn.Module, dst: nn.Module) -> Dict[str, Tuple[Backbone, Backbone]]:
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

def _join(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def _tap_renames(src: Backbone, dst: Backbone, prefix: str) -> Dict[str, Optional[str]]:
    """Destination tap module -> source tap module (taps are numbered by slot, not by level);
    None for a scSE tap the source did not have."""
    if not isinstance(dst, EfficientNet):
        return {}
    slots = {level: slot for slot, level in enumerate(_tap_levels(src))}
    gated = _scse_levels(src)
    renames: Dict[str, Optional[str]] = {}
    for slot, level in enumerate(dst.out_indices):
        source = _join(prefix, f'taps.{slots[level]}') if level in gated else None
        renames[_join(prefix, f'taps.{slot}')] = source
    return renames


def _renamer(table: Mapping[str, Optional[str]]) -> Callable[[str], Optional[str]]:
    """Rename a module by the longest entry of ``table`` that is it or one of its ancestors."""
    def rename(name: str) -> Optional[str]:
        for old in sorted(table, key=len, reverse=True):
            if name == old or name.startswith(f'{old}.'):
                new = table[old]
                return None if new is None else new + name[len(old):]
        return name
    return rename


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
        block = _join(prefix, f'decoder.blocks.{index}')
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
#: features in ways no rule describes yet, so ``mode='exact'`` refuses them.
SMP_EXACT = ('Unet', 'FPN', 'DeepLabV3', 'DeepLabV3Plus', 'Segformer')


def _check_smp_decoders(dst: nn.Module) -> None:
    try:
        from segmentation_models_pytorch.base import SegmentationModel
    except ImportError:
        return
    for name, module in dst.named_modules():
        if isinstance(module, SegmentationModel) and type(module).__name__ not in SMP_EXACT:
            raise TransplantError(
                f'{_describe(module)}{f" at {name!r}" if name else ""}: exact transplanting of '
                f'smp {type(module).__name__} is not supported (supported: {", ".join(SMP_EXACT)}); '
                f"use mode='plain' to copy the overlapping slices only")


#: Rules for task models whose layers concatenate growing tensors. Decoders, FPNs and heads that
#: only read one growing tensor per layer (torchvision FPN and RetinaNet, smp FPN, DeepLabV3+)
#: need none: the leading slice is right for them.
MAP_RULES: List[MapRule] = [smp_unet_rule]


def _channel_maps(src: nn.Module, dst: nn.Module) -> Dict[str, MapPair]:
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


def _stage_sources(src: Backbone, dst: Backbone) -> List[Tuple[Optional[int], ...]]:
    """For each destination stage, the source block feeding each of its blocks (None: appended)."""
    return [tuple(k if k < len(src.stages[s]) else None for k in range(len(stage)))
            for s, stage in enumerate(dst.stages)]


@torch.no_grad()
def _add_identities(src: Backbone, dst: Backbone, prefix: str, growth: Dict[str, Growth]) -> None:
    """Make what the destination adds start as identities, counting the zeros in ``growth``.

    An appended block has a skip, so a residual branch that ends in a norm with weight and bias
    zero leaves it an identity. A new scSE tap computes ``x * cSE + x * sSE``; with the last
    convolution of each gate zero both gates are sigmoid(0) = 0.5, and x/2 + x/2 = x exactly.
    """
    for stage_id, sources in enumerate(_stage_sources(src, dst)):
        for index, source in enumerate(sources):
            if source is None:
                name = f'stages.{stage_id}.{index}.project.norm'
                _zero_affine(dst.get_submodule(name), _join(prefix, name), growth)
    for tap_name, source in _tap_renames(src, dst, '').items():
        if source is None and isinstance(dst.get_submodule(tap_name), SCSE):
            for gate in ('channel_gate.3', 'spatial_gate.0'):
                name = f'{tap_name}.{gate}'
                _zero_affine(dst.get_submodule(name), _join(prefix, name), growth)


# ---------------------------------------------------------------------------------------------
# Parts of the report
# ---------------------------------------------------------------------------------------------

def _part_of(name: str, backbones: Sequence[str]) -> str:
    """The report part a module belongs to: a backbone's stem, stage, taps or head, or the
    outermost module around it that holds no backbone (the decoder, a head, an FPN)."""
    for prefix in backbones:
        if prefix == '' or name == prefix or name.startswith(f'{prefix}.'):
            inner = name[len(prefix):].lstrip('.').split('.')
            depth = 2 if inner[0] == 'stages' else 1
            return _join(prefix, '.'.join(inner[:depth]))
    parts = name.split('.')
    for depth in range(1, len(parts) + 1):
        candidate = '.'.join(parts[:depth])
        if not any(b.startswith(f'{candidate}.') for b in backbones):
            return candidate
    return name


def _collect_parts(growth: Mapping[str, Growth], backbones: Mapping[str, Tuple[Backbone, Backbone]]) \
        -> Tuple[PartReport, ...]:
    totals: Dict[str, List[int]] = {}
    for name, counts in growth.items():
        entry = totals.setdefault(_part_of(name, list(backbones)), [0, 0, 0])
        entry[0] += counts.params
        entry[1] += counts.copied
        entry[2] += counts.zeroed
    sources = {_join(prefix, f'stages.{s}'): blocks
               for prefix, (src, dst) in backbones.items()
               for s, blocks in enumerate(_stage_sources(src, dst))}
    return tuple(PartReport(name, *counts, sources=sources.get(name, ()))
                 for name, counts in totals.items())


# ---------------------------------------------------------------------------------------------
# A source given as a checkpoint
# ---------------------------------------------------------------------------------------------

def _classifier_from_checkpoint(checkpoint: Any, source: str) -> EfficientNetClassifier:
    from .weights import convert_state_dict, load_pretrained, read_checkpoint, settings_of, \
        variants_of

    ckpt = read_checkpoint(checkpoint, source)
    ours = convert_state_dict(ckpt.state_dict, source)
    fits = variants_of(ours)
    if len(fits) != 1 or 'classifier.weight' not in ours:
        raise TransplantError('the checkpoint is not a whole EfficientNet classifier '
                              f'(it fits {fits or "no variant"}, classifier '
                              f'{"present" if "classifier.weight" in ours else "absent"})')
    model = EfficientNetClassifier(fits[0], num_classes=ours['classifier.weight'].shape[0],
                                   **settings_of(ckpt, source, fits[0]))
    load_pretrained(model, ckpt, source=source)
    return model


def _backbone_from_checkpoint(checkpoint: Any, dst: EfficientNet, source: str) -> EfficientNet:
    from .factory import create_backbone
    from .weights import checkpoint_config

    # our own files rebuild the saved backbone (taps included); others have every stage
    saved = checkpoint_config(checkpoint)
    options = {} if saved else dict(out_indices=dst.out_indices)
    return create_backbone(pretrained=checkpoint, source=source, **options)


def _source_model(src: Any, dst: nn.Module, source: str) -> nn.Module:
    """``src`` itself if it is a model, else the backbone or classifier its checkpoint holds."""
    if isinstance(src, nn.Module):
        return src
    from .weights import WeightsError

    name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else f'<{type(src).__name__}>'
    backbones = find_backbones(dst)
    if list(backbones) != ['']:
        raise TransplantError(
            f"checkpoint '{name}' -> {_describe(dst)}: only a backbone or classifier takes a "
            f'checkpoint directly; build the trained task model (U-Net, RetinaNet) and pass it, '
            f'or use tools/transplant.py with --config')
    try:
        if isinstance(dst, EfficientNetClassifier):
            return _classifier_from_checkpoint(src, source)
        return _backbone_from_checkpoint(src, dst, source)
    except (WeightsError, TransplantError, ValueError) as err:
        raise TransplantError(f"cannot transplant checkpoint '{name}' into {_describe(dst)}: "
                              f'{err}') from err


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    return mode


def _full_renamer(pairs: Mapping[str, Tuple[Backbone, Backbone]]) -> Callable[[str], Optional[str]]:
    table: Dict[str, Optional[str]] = {}
    for prefix, (src, dst) in pairs.items():
        table.update(_tap_renames(src, dst, prefix))
    return _renamer(table)


@torch.no_grad()
def transplant(src: Any, dst: nn.Module, mode: str = 'exact', source: str = 'auto') -> TransplantReport:
    """Grow a trained EfficientNet (or a model built on one) into a larger variant, in place.

    ``dst`` must be the same kind of model as ``src`` (backbone, classifier, U-Net, ...) built on
    a variant at least as large, with the same padding, activation, norm layer and eps, input
    channels and output stride; a backbone's taps must be among the source's. The deeper stages,
    heads and decoders of ``dst`` are matched by module name.

    Args:
        src: the trained model, or for a backbone or classifier ``dst`` a checkpoint (a file or
            state dict of ours, torchvision's or timm's, or a hub name; see
            :func:`effnet_backbones.load_pretrained`).
        dst: the larger model to fill; whatever the source does not cover keeps its values.
        mode: 'exact' (the grown model computes the source's outputs on the source's channels)
            or 'plain' (copy the overlapping slices only).
        source: how to read a checkpoint ``src``: 'auto', 'torchvision', 'timm', 'timm_tf',
            'effnet_backbones'.

    Returns:
        A :class:`TransplantReport`: per part the parameters copied and zeroed, and per stage
        which source block fed which destination block.

    Raises:
        TransplantError: a smaller destination, different settings, missing taps, a checkpoint
            that is not an EfficientNet, or models of different kinds; the message names both.
    """
    exact = _check_mode(mode) == 'exact'
    src = _source_model(src, dst, source)
    pairs = _pair_backbones(src, dst)
    for name, (theirs, ours) in pairs.items():
        _check_pair(theirs, ours, name)
    if exact:
        _check_smp_decoders(dst)
    try:
        growth = grow_modules(src, dst, rename=_full_renamer(pairs), maps=_channel_maps(src, dst),
                              exact=exact)
    except TransplantError as err:  # a layer-level problem: say which two models it concerns
        raise TransplantError(f'{_describe(src)} -> {_describe(dst)}: {err}') from None
    if exact:
        for prefix, (theirs, ours) in pairs.items():
            _add_identities(theirs, ours, prefix, growth)
    return TransplantReport(source=_describe(src), destination=_describe(dst),
                            mode=mode, parts=_collect_parts(growth, pairs))


def grow_backbone(src: Any, arch: str, mode: str = 'exact', source: str = 'auto',
                  **options: Any) -> Tuple[EfficientNet, TransplantReport]:
    """Build the ``arch`` variant of a trained backbone, with its settings, and transplant into it.

    Args:
        src: an :class:`EfficientNet`, or a checkpoint: our own file rebuilds the saved backbone
            (taps, scSE, settings); torchvision and timm weights give a backbone with every tap.
        arch: the larger variant, 'b0' ... 'b7'.
        mode: 'exact' or 'plain', as for :func:`transplant`.
        source: how to read a checkpoint ``src``, as for :func:`transplant`.
        **options: :class:`EfficientNet` options that differ from the source's (``drop_path_rate``,
            ``out_indices`` drawn from the source's, ...).

    Returns:
        The grown backbone and the :class:`TransplantReport`.
    """
    if not isinstance(src, EfficientNet):
        from .factory import create_backbone
        from .weights import WeightsError, checkpoint_config

        try:
            extra = {} if checkpoint_config(src) else dict(out_indices=tuple(range(len(TAP_STAGES))))
            src = create_backbone(pretrained=src, source=source, **extra)
        except (WeightsError, ValueError) as err:
            raise TransplantError(f'cannot grow {src!r} into efficientnet_{arch}: {err}') from err
    dst = EfficientNet(**{**src.config, **options, 'arch': arch})
    return dst, transplant(src, dst, mode=mode)


# ---------------------------------------------------------------------------------------------
# Checking a transplant
# ---------------------------------------------------------------------------------------------

def _tensors(output: Any) -> List[torch.Tensor]:
    """The tensors of a model output (a tensor, a list or tuple, a dict), in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for value in output.values() for t in _tensors(value)]
    if isinstance(output, (list, tuple)):
        return [t for value in output for t in _tensors(value)]
    return []


def _eval_outputs(model: nn.Module, inputs: torch.Tensor) -> List[torch.Tensor]:
    """Outputs of ``model`` in eval mode, leaving each module's training flag as it was."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return _tensors(model(inputs))
    finally:
        for module, mode in modes:
            module.training = mode


def max_difference(src: nn.Module, dst: nn.Module, inputs: torch.Tensor) -> float:
    """Largest absolute difference between the source's outputs and the destination's, restricted
    to the source's channels (dimension 1), both in eval mode: 0 up to rounding after an exact
    transplant."""
    theirs, ours = _eval_outputs(src, inputs), _eval_outputs(dst, inputs)
    if len(theirs) != len(ours):
        raise TransplantError(f'the source returns {len(theirs)} tensors and the destination '
                              f'{len(ours)}; compare models with the same outputs')
    worst = 0.0
    for a, b in zip(theirs, ours):
        b = b[:, :a.shape[1]] if a.dim() > 1 else b
        worst = max(worst, (a.float() - b.float()).abs().max().item())
    return worst
