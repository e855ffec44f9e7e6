"""Growing trained layers into wider copies of themselves: the generic half of transplanting.

A layer of a small network is copied into the matching layer of a larger one. Every tensor
dimension that grows gets a :class:`ChannelMap` saying where each source channel lives in the
destination (usually the leading slice; a concatenation of several growing inputs, as in a U-Net
decoder, maps run by run). In ``exact`` mode the destination's weights from channels that the
source did not have *into* channels that it had are zeroed, so the source channels compute what
they computed before; every other destination value (new outputs, weights between new channels)
keeps the destination's initialisation, so the new channels learn from the first step.

Nothing here knows EfficientNet: :mod:`effnet_backbones.transplanting` uses these functions for
backbones, and the same walker grows decoders, FPNs and heads of task models.

(About 340 lines, kept as one module on purpose: the channel maps and the per-layer copy rules
they drive are read together, and nothing else uses either.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .layers import is_norm

__all__ = ['TransplantError', 'ChannelMap', 'Growth', 'MapPair', 'grow_module', 'grow_modules',
           'leaf_modules', 'norm_kind']

Tensor = torch.Tensor
#: (input-channel map, output-channel map) of one module; None means "the leading slice".
MapPair = Tuple[Optional['ChannelMap'], Optional['ChannelMap']]


class TransplantError(ValueError):
    """Two models (or layers) that cannot be transplanted one into the other."""


# ---------------------------------------------------------------------------------------------
# Where source channels live in the destination
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelMap:
    """Where the channels of one source tensor dimension sit in the destination's dimension.

    Attributes:
        src_size: channels in the source.
        dst_size: channels in the destination.
        runs: ``(src_start, dst_start, length)`` blocks of consecutive channels, in source order;
            together they cover every source channel once.
    """

    src_size: int
    dst_size: int
    runs: Tuple[Tuple[int, int, int], ...]

    @classmethod
    def leading(cls, src_size: int, dst_size: int) -> 'ChannelMap':
        """Source channels occupy the first ``src_size`` destination channels."""
        if src_size > dst_size:
            raise TransplantError(f'{src_size} source channels do not fit in {dst_size} '
                                  f'destination channels')
        return cls(src_size, dst_size, ((0, 0, src_size),) if src_size else ())

    @classmethod
    def concat(cls, parts: Sequence['ChannelMap']) -> 'ChannelMap':
        """The map of ``torch.cat`` of tensors with maps ``parts`` (in that order) along channels."""
        runs: List[Tuple[int, int, int]] = []
        src_offset = dst_offset = 0
        for part in parts:
            runs += [(s + src_offset, d + dst_offset, n) for s, d, n in part.runs]
            src_offset += part.src_size
            dst_offset += part.dst_size
        return cls(src_offset, dst_offset, tuple(runs))

    @property
    def is_leading(self) -> bool:
        """Whether the source channels are exactly the first ``src_size`` destination channels."""
        position = 0
        for src_start, dst_start, length in self.runs:
            if src_start != position or dst_start != position:
                return False
            position += length
        return position == self.src_size

    def new_runs(self) -> List[Tuple[int, int]]:
        """``(dst_start, length)`` of the destination channels that no source channel feeds."""
        runs, position = [], 0
        for start, length in sorted(self.dst_runs()):
            if start > position:
                runs.append((position, start - position))
            position = max(position, start + length)
        if position < self.dst_size:
            runs.append((position, self.dst_size - position))
        return runs

    def dst_runs(self) -> Iterator[Tuple[int, int]]:
        """``(dst_start, length)`` of every run."""
        return ((start, length) for _, start, length in self.runs)


@dataclass
class Growth:
    """What growing one destination module did, counted in parameter elements.

    Attributes:
        params: parameter elements the destination module owns.
        copied: of them, elements that now hold source values.
        zeroed: of them, elements set to zero so that source channels compute as before.
    """

    params: int
    copied: int = 0
    zeroed: int = 0


# ---------------------------------------------------------------------------------------------
# Checks that the two modules are the same layer at two widths
# ---------------------------------------------------------------------------------------------

def norm_kind(module: nn.Module) -> str:
    """'batchnorm' for BN, SyncBN and frozen BN (the same per-channel affine map in eval), else the
    class name: the norm families that may stand in for one another in a transplant."""
    has_stats = getattr(module, 'running_mean', None) is not None
    if is_norm(module) and has_stats and not isinstance(module, nn.GroupNorm):
        return 'batchnorm'
    return type(module).__name__


def _kind(module: nn.Module) -> str:
    return norm_kind(module) if is_norm(module) else type(module).__name__


def _conv_geometry(conv: nn.Conv2d) -> Dict[str, object]:
    return dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                dilation=conv.dilation, padding_mode=conv.padding_mode,
                depthwise=_is_depthwise(conv), bias=conv.bias is not None)


def _is_depthwise(conv: nn.Module) -> bool:
    return isinstance(conv, nn.Conv2d) and conv.groups > 1 and conv.groups == conv.in_channels \
        == conv.out_channels


def check_same_layer(src: nn.Module, dst: nn.Module, where: str) -> None:
    """Raise unless ``src`` and ``dst`` are the same kind of layer with the same geometry."""
    if _kind(src) != _kind(dst):
        raise TransplantError(f'{where}: source is {type(src).__name__}, destination is '
                              f'{type(dst).__name__}; they must be the same kind of layer')
    if isinstance(dst, nn.Conv2d):
        ours, theirs = _conv_geometry(src), _conv_geometry(dst)
        if ours != theirs:
            diff = {key: (ours[key], theirs[key]) for key in ours if ours[key] != theirs[key]}
            raise TransplantError(f'{where}: convolutions differ in {diff} (source, destination)')
        if dst.groups > 1 and not _is_depthwise(dst) and src.weight.shape != dst.weight.shape:
            raise TransplantError(f'{where}: grouped convolutions (groups={dst.groups}) can only '
                                  f'be copied at equal width')
    eps = (getattr(src, 'eps', None), getattr(dst, 'eps', None))
    if is_norm(dst) and eps[0] != eps[1]:
        raise TransplantError(f'{where}: norm eps differs: source {eps[0]}, destination {eps[1]}; '
                              f'build the destination with the source\'s eps (norm_eps={eps[0]})')


# ---------------------------------------------------------------------------------------------
# Copying tensors through channel maps
# ---------------------------------------------------------------------------------------------

def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _default_map(src_size: int, dst_size: int, given: Optional[ChannelMap], what: str,
                 where: str) -> ChannelMap:
    if given is None:
        if src_size > dst_size:
            raise TransplantError(f'{where}: the destination is smaller than the source '
                                  f'({what}: source {src_size}, destination {dst_size})')
        return ChannelMap.leading(src_size, dst_size)
    if (given.src_size, given.dst_size) != (src_size, dst_size):
        raise TransplantError(f'{where}: {what} map is {given.src_size} -> {given.dst_size} '
                              f'channels but the layers have {src_size} -> {dst_size}')
    return given


def _copy_vector(src: Tensor, dst: Tensor, out_map: ChannelMap) -> None:
    """Copy a per-channel tensor (bias, norm parameter or statistic) through ``out_map``."""
    for s, d, n in out_map.runs:
        dst[d:d + n].copy_(src[s:s + n])


def _copy_matrix(src: Tensor, dst: Tensor, out_map: ChannelMap, in_map: ChannelMap) -> None:
    """Copy a weight (out, in, ...) block by block through both maps."""
    for so, do, no in out_map.runs:
        for si, di, ni in in_map.runs:
            dst[do:do + no, di:di + ni].copy_(src[so:so + no, si:si + ni])


def _zero_leaks(dst: Tensor, out_map: ChannelMap, in_map: ChannelMap) -> int:
    """Zero the weights from new input channels into source output channels; returns how many."""
    zeroed = 0
    for out_start, out_length in out_map.dst_runs():
        for in_start, in_length in in_map.new_runs():
            block = dst[out_start:out_start + out_length, in_start:in_start + in_length]
            block.zero_()
            zeroed += block.numel()
    return zeroed


def _grow_weighted(src: nn.Module, dst: nn.Module, in_map: Optional[ChannelMap],
                   out_map: Optional[ChannelMap], exact: bool, where: str) -> Growth:
    """Conv2d (dense or depthwise) and Linear: weight through both maps, bias through the output's."""
    growth = Growth(_numel(dst))
    out_map = _default_map(src.weight.shape[0], dst.weight.shape[0], out_map, 'output channels', where)
    if _is_depthwise(dst):  # one filter per channel: the input map is the output map
        _copy_vector(src.weight, dst.weight, out_map)
    else:
        in_map = _default_map(src.weight.shape[1], dst.weight.shape[1], in_map, 'input channels', where)
        _copy_matrix(src.weight, dst.weight, out_map, in_map)
        if exact:
            growth.zeroed = _zero_leaks(dst.weight, out_map, in_map)
    if dst.bias is not None:
        _copy_vector(src.bias, dst.bias, out_map)
    growth.copied = _numel(src)
    return growth


_NORM_TENSORS = ('weight', 'bias', 'running_mean', 'running_var')


def _grow_batchnorm(src: nn.Module, dst: nn.Module, out_map: Optional[ChannelMap],
                    where: str) -> Growth:
    """BN-like norms: affine parameters and running statistics through the channel map.

    New channels keep the destination's values (at initialisation: weight 1, bias 0, mean 0,
    var 1). BN, SyncBN and frozen BN exchange freely: they compute the same thing in eval.
    """
    size = lambda m: m.running_mean.shape[0]  # noqa: E731 - frozen BN has no num_features
    out_map = _default_map(size(src), size(dst), out_map, 'channels', where)
    for name in _NORM_TENSORS:
        source, target = getattr(src, name, None), getattr(dst, name, None)
        if source is not None and target is not None:
            _copy_vector(source, target, out_map)
    counter = (getattr(src, 'num_batches_tracked', None), getattr(dst, 'num_batches_tracked', None))
    if counter[0] is not None and counter[1] is not None:
        counter[1].copy_(counter[0])
    return Growth(_numel(dst), copied=_numel(src))


def _copy_whole(src: nn.Module, dst: nn.Module, where: str) -> Growth:
    """Layers of any other kind must have equal shapes; their tensors are copied as they are."""
    theirs = dict(src.named_parameters(recurse=False)) | dict(src.named_buffers(recurse=False))
    ours = dict(dst.named_parameters(recurse=False)) | dict(dst.named_buffers(recurse=False))
    shapes = {k: (tuple(theirs[k].shape) if k in theirs else None, tuple(v.shape))
              for k, v in ours.items()}
    wrong = {k: pair for k, pair in shapes.items() if pair[0] != pair[1]}
    if wrong or set(theirs) != set(ours):
        raise TransplantError(
            f'{where}: {type(dst).__name__} layers cannot grow (they do not act per channel); '
            f'shapes (source, destination): {wrong or shapes}')
    for key, value in ours.items():
        value.copy_(theirs[key])
    return Growth(_numel(dst), copied=_numel(src))


@torch.no_grad()
def grow_module(src: nn.Module, dst: nn.Module, in_map: Optional[ChannelMap] = None,
                out_map: Optional[ChannelMap] = None, exact: bool = True,
                where: str = 'layer') -> Growth:
    """Copy one layer of a small network into the matching, possibly wider, layer of a larger one.

    Args:
        src: the trained layer.
        dst: the layer to fill, of the same kind, each dimension at least as wide.
        in_map: where the source's input channels sit among the destination's (leading slice if
            None). Ignored by depthwise convolutions and norms.
        out_map: the same for output channels (and biases, norm channels).
        exact: zero the destination's weights from new inputs into the source's outputs.
        where: the layer's name, for error messages.
    """
    check_same_layer(src, dst, where)
    if isinstance(dst, (nn.Conv2d, nn.Linear)):
        return _grow_weighted(src, dst, in_map, out_map, exact, where)
    if norm_kind(dst) == 'batchnorm':
        return _grow_batchnorm(src, dst, out_map, where)
    return _copy_whole(src, dst, where)


# ---------------------------------------------------------------------------------------------
# Walking two models side by side
# ---------------------------------------------------------------------------------------------

def _owns_tensors(module: nn.Module) -> bool:
    return bool(list(module.parameters(recurse=False)) or list(module.buffers(recurse=False)))


def leaf_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """Modules of ``model`` that own parameters or buffers, by name (the units a walker grows)."""
    return {name: module for name, module in model.named_modules() if _owns_tensors(module)}


def _check_kinds(src: nn.Module, dst: nn.Module, rename: Callable[[str], Optional[str]]) -> None:
    """Every destination module with a source counterpart has its kind: activations, and blocks
    such as an attention module where the source has an identity, included."""
    theirs = dict(src.named_modules())
    for name, module in dst.named_modules():
        if not name:
            continue
        counterpart = rename(name)
        if counterpart is not None and counterpart in theirs:
            if _kind(theirs[counterpart]) != _kind(module):
                raise TransplantError(
                    f'{name}: source has {type(theirs[counterpart]).__name__}, destination has '
                    f'{type(module).__name__} (different activation, norm or layer settings)')


def grow_modules(src: nn.Module, dst: nn.Module, rename: Callable[[str], Optional[str]] = lambda n: n,
                 maps: Optional[Mapping[str, MapPair]] = None, exact: bool = True) -> Dict[str, Growth]:
    """Grow every layer of ``dst`` from the layer of ``src`` that ``rename`` names.

    Args:
        src: the trained model.
        dst: the model to fill; modules are matched by name.
        rename: destination module name -> source module name, or None for a module that has no
            source (it keeps its initialisation). Names missing from ``src`` count as new too.
        maps: destination module name -> (input map, output map) where a dimension is not the
            leading slice (concatenated inputs).
        exact: zero the weights through which new channels would reach source channels.

    Returns:
        destination module name -> :class:`Growth`, for every module that owns tensors.
    """
    maps = maps or {}
    _check_kinds(src, dst, rename)
    theirs = leaf_modules(src)
    result: Dict[str, Growth] = {}
    for name, module in leaf_modules(dst).items():
        counterpart = rename(name)
        if counterpart is None or counterpart not in theirs:
            result[name] = Growth(_numel(module))
            continue
        in_map, out_map = maps.get(name, (None, None))
        result[name] = grow_module(theirs[counterpart], module, in_map, out_map, exact, where=name)
    return result
