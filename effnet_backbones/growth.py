"""Growing trained layers into wider copies of themselves: the generic half of transplanting.

A layer of a small network is copied into the matching layer of a larger one. Every tensor
dimension that grows gets a :class:`ChannelMap` saying where each source channel lives in the
destination (usually the leading slice; a concatenation of several growing inputs, as in a U-Net
decoder, maps run by run). In ``exact`` mode the destination's weights from channels that the
source did not have *into* channels that it had are zeroed, so the source channels compute what
they computed before; every other destination value (new outputs, weights between new channels)
keeps the destination's initialisation, so the new channels learn from the first step. In
``net2wider`` mode (Net2Net's Net2WiderNet) every new channel instead copies a source channel
(:meth:`ChannelMap.sources`) and the weights reading a copied channel are split among its copies,
so the whole function is kept: each destination channel computes the source channel it replicates.

Nothing here knows EfficientNet: :mod:`effnet_backbones.transplanting` uses these functions for
backbones, and the same walker grows decoders, FPNs and heads of task models.

(About 480 lines, kept as one module on purpose: the channel maps and the per-layer copy rules
they drive are read together, and nothing else uses either.)
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .layers import is_norm

__all__ = ['MODES', 'NET2WIDER_NOISE', 'TransplantError', 'ChannelMap', 'Growth', 'MapPair',
           'grow_module', 'grow_modules', 'leaf_modules', 'norm_kind', 'replica_sources',
           'resolve_mode']

Tensor = torch.Tensor
#: (input-channel map, output-channel map) of one module; None means "the leading slice".
MapPair = Tuple[Optional['ChannelMap'], Optional['ChannelMap']]

#: 'exact': source channels compute as before, new channels keep their initialisation;
#: 'plain': overlapping slices copied, nothing else; 'net2wider': new channels replicate source
#: channels, so every destination channel computes the source channel it copies.
MODES = ('exact', 'plain', 'net2wider')
#: Default symmetry-breaking noise of net2wider, relative to each copy's share of a weight.
NET2WIDER_NOISE = 1e-2


class TransplantError(ValueError):
    """Two models (or layers) that cannot be transplanted one into the other."""


# ---------------------------------------------------------------------------------------------
# Where source channels live in the destination
# ---------------------------------------------------------------------------------------------

def _check_fits(src_size: int, dst_size: int) -> None:
    if src_size > dst_size:
        raise TransplantError(f'{src_size} source channels do not fit in {dst_size} '
                              f'destination channels')


@functools.lru_cache(maxsize=None)
def replica_sources(src_size: int, dst_size: int) -> Tuple[int, ...]:
    """The source channel that each of the ``dst_size - src_size`` new channels of a grown tensor
    copies in ``net2wider`` mode (Net2Net's replication map g, restricted to the new channels).

    The k-th new channel copies ``perm[k % src_size]``, ``perm`` a permutation of the source
    channels seeded by the two sizes only: two tensors that are added or multiplied (the residuals
    of a stage, an SE gate and its input) have equal sizes, so they get the same map without any
    bookkeeping. The permutation spreads the copies over the source channels instead of always
    duplicating the first ones; Python's ``random`` with a string seed is the same on every
    platform and Python version.
    """
    _check_fits(src_size, dst_size)
    if dst_size > src_size and src_size == 0:
        raise TransplantError(f'{dst_size} new channels have no source channel to replicate '
                              f'(the source tensor has none)')
    perm = list(range(src_size))
    random.Random(f'net2wider {src_size}->{dst_size}').shuffle(perm)
    return tuple(perm[k % src_size] for k in range(dst_size - src_size))


@dataclass(frozen=True)
class ChannelMap:
    """Where the channels of one source tensor dimension sit in the destination's dimension.

    Attributes:
        src_size: channels in the source.
        dst_size: channels in the destination.
        runs: ``(src_start, dst_start, length)`` blocks of consecutive channels, in source order;
            together they cover every source channel once.
        replicas: for ``net2wider``, the source channel each new destination channel copies, in
            destination order (None marks a new channel of a part that has no source channel);
            None for the whole field means :func:`replica_sources` of the two sizes, the map of
            one tensor. :meth:`concat` sets it from its parts.
    """

    src_size: int
    dst_size: int
    runs: Tuple[Tuple[int, int, int], ...]
    replicas: Optional[Tuple[Optional[int], ...]] = field(default=None, repr=False)

    @classmethod
    def leading(cls, src_size: int, dst_size: int) -> 'ChannelMap':
        """Source channels occupy the first ``src_size`` destination channels."""
        _check_fits(src_size, dst_size)
        return cls(src_size, dst_size, ((0, 0, src_size),) if src_size else ())

    @classmethod
    def concat(cls, parts: Sequence['ChannelMap']) -> 'ChannelMap':
        """The map of ``torch.cat`` of tensors with maps ``parts`` (in that order) along channels.

        Each part keeps its own replication map (offset to its source channels), so the
        concatenation's new channels copy what each tensor's new channels hold.
        """
        runs: List[Tuple[int, int, int]] = []
        replicas: List[Optional[int]] = []
        src_offset = dst_offset = 0
        for part in parts:
            runs += [(s + src_offset, d + dst_offset, n) for s, d, n in part.runs]
            replicas += [None if r is None else r + src_offset for r in part._replicas()]
            src_offset += part.src_size
            dst_offset += part.dst_size
        # no new channel: no replicas to record, and the map equals a leading one of that size
        return cls(src_offset, dst_offset, tuple(runs), tuple(replicas) if replicas else None)

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

    def _replicas(self) -> Tuple[Optional[int], ...]:
        """The source channel of each new destination channel, None where there is none."""
        if self.replicas is not None:
            return self.replicas
        new = self.dst_size - self.src_size
        if new and not self.src_size:  # nothing to copy; only :meth:`sources` needs to say so
            return (None,) * new
        return replica_sources(self.src_size, self.dst_size)

    def sources(self) -> Tuple[int, ...]:
        """The source channel of every destination channel (Net2Net's g), ``dst_size`` long:
        source channels where the runs put them, new channels the source channel they copy.

        Raises:
            TransplantError: a new channel has no source channel to copy (a part that grows from
                zero channels), or ``replicas`` does not fit the map.
        """
        table: List[Optional[int]] = [None] * self.dst_size
        for src_start, dst_start, length in self.runs:
            table[dst_start:dst_start + length] = range(src_start, src_start + length)
        new = [index for index, source in enumerate(table) if source is None]
        replicas = self._replicas()
        if len(replicas) != len(new):
            raise TransplantError(f'the channel map has {len(new)} new channels but '
                                  f'{len(replicas)} replicas')
        for index, source in zip(new, replicas):
            if source is None or not 0 <= source < self.src_size:
                raise TransplantError(f'destination channel {index} of {self.dst_size} has no '
                                      f'source channel among {self.src_size} to replicate')
            table[index] = source
        return tuple(table)  # type: ignore[arg-type]  # every entry is set above


@dataclass
class Growth:
    """What growing one destination module did, counted in parameter elements.

    Attributes:
        params: parameter elements the destination module owns.
        copied: of them, elements that now hold source values. In ``exact`` and ``plain`` mode
            the source's own elements, one for one; in ``net2wider`` mode every element filled
            from the source: the source's positions, the replicas of new channels and the split
            shares of weights reading a copied channel (all of a grown module's elements).
        zeroed: of them, elements set to zero so that source channels compute as before (in
            ``net2wider`` mode nothing is zeroed here; only the identities that
            :mod:`effnet_backbones.transplanting` adds for appended blocks count).
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


def _index(channel_map: ChannelMap, like: Tensor) -> Tensor:
    """:meth:`ChannelMap.sources` as an index tensor on ``like``'s device."""
    return torch.tensor(channel_map.sources(), dtype=torch.long).to(like.device)


def _gather_vector(src: Tensor, dst: Tensor, out_map: ChannelMap) -> None:
    """net2wider: every destination channel of a per-channel tensor takes its source's value."""
    dst.copy_(src[_index(out_map, dst)])


def _split_inputs(weight: Tensor, in_map: ChannelMap, noise: float,
                  generator: Optional[torch.Generator]) -> Tensor:
    """net2wider: spread a weight's source input channels over their copies.

    ``weight`` (out, src_in, ...) already has the destination's output channels. Destination
    input ``i`` gets ``weight[:, g(i)]`` times a share of ``1 / copies(g(i))``, perturbed by
    ``noise`` (relative) with zero sum over the copies of each source channel, per output element
    and kernel position: copies carry equal activations, so the sum over copies, and with it the
    output, is unchanged, while the copies' weights differ and so get different gradients.
    """
    index = torch.tensor(in_map.sources(), dtype=torch.long)
    copies = torch.bincount(index, minlength=in_map.src_size).double()
    gathered = weight.double()[:, index.to(weight.device)]
    # float64: the shares of a channel then add up to 1 far below float32 rounding
    broadcast = (1, -1) + (1,) * (weight.dim() - 2)
    share = (1.0 / copies[index]).view(broadcast)
    if noise:
        draw = torch.randn(gathered.shape, generator=generator, dtype=torch.float64)
        group_sums = torch.zeros(weight.shape, dtype=torch.float64).index_add_(1, index, draw)
        draw -= (group_sums / copies.view(broadcast))[:, index]  # centred within each group
        share = share * (1.0 + noise * draw)
    return gathered * share.to(weight.device)


def _replicate_weighted(src: nn.Module, dst: nn.Module, in_map: ChannelMap, out_map: ChannelMap,
                        noise: float, generator: Optional[torch.Generator]) -> None:
    """net2wider for Conv2d and Linear: rows gathered by the output map, inputs split."""
    rows = src.weight[_index(out_map, src.weight)]
    if _is_depthwise(dst):  # a filter reads only its own channel, a copy of its source's
        dst.weight.copy_(rows)
    else:
        dst.weight.copy_(_split_inputs(rows, in_map, noise, generator))
    if dst.bias is not None:
        _gather_vector(src.bias, dst.bias, out_map)


def _grow_weighted(src: nn.Module, dst: nn.Module, in_map: Optional[ChannelMap],
                   out_map: Optional[ChannelMap], mode: str, where: str, noise: float = 0.0,
                   generator: Optional[torch.Generator] = None) -> Growth:
    """Conv2d (dense or depthwise) and Linear: weight through both maps, bias through the output's."""
    growth = Growth(_numel(dst))
    out_map = _default_map(src.weight.shape[0], dst.weight.shape[0], out_map, 'output channels', where)
    # a depthwise filter's input channel is its output channel: one map for both
    in_map = out_map if _is_depthwise(dst) else \
        _default_map(src.weight.shape[1], dst.weight.shape[1], in_map, 'input channels', where)
    if mode == 'net2wider':
        _replicate_weighted(src, dst, in_map, out_map, noise, generator)
        growth.copied = _numel(dst)
        return growth
    if _is_depthwise(dst):
        _copy_vector(src.weight, dst.weight, out_map)
    else:
        _copy_matrix(src.weight, dst.weight, out_map, in_map)
        if mode == 'exact':
            growth.zeroed = _zero_leaks(dst.weight, out_map, in_map)
    if dst.bias is not None:
        _copy_vector(src.bias, dst.bias, out_map)
    growth.copied = _numel(src)
    return growth


_NORM_TENSORS = ('weight', 'bias', 'running_mean', 'running_var')


def _grow_batchnorm(src: nn.Module, dst: nn.Module, out_map: Optional[ChannelMap],
                    mode: str, where: str) -> Growth:
    """BN-like norms: affine parameters and running statistics through the channel map.

    New channels keep the destination's values (at initialisation: weight 1, bias 0, mean 0,
    var 1), or in ``net2wider`` mode those of the source channel they copy. BN, SyncBN and frozen
    BN exchange freely: they compute the same thing in eval.
    """
    size = lambda m: m.running_mean.shape[0]  # noqa: E731 - frozen BN has no num_features
    out_map = _default_map(size(src), size(dst), out_map, 'channels', where)
    copy = _gather_vector if mode == 'net2wider' else _copy_vector
    for name in _NORM_TENSORS:
        source, target = getattr(src, name, None), getattr(dst, name, None)
        if source is not None and target is not None:
            copy(source, target, out_map)
    counter = (getattr(src, 'num_batches_tracked', None), getattr(dst, 'num_batches_tracked', None))
    if counter[0] is not None and counter[1] is not None:
        counter[1].copy_(counter[0])
    return Growth(_numel(dst), copied=_numel(dst if mode == 'net2wider' else src))


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


def resolve_mode(exact: bool = True, mode: Optional[str] = None) -> str:
    """The growth mode: ``mode`` when given (one of :data:`MODES`), else 'exact' or 'plain' from
    the older ``exact`` flag."""
    if mode is None:
        return 'exact' if exact else 'plain'
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    return mode


@torch.no_grad()
def grow_module(src: nn.Module, dst: nn.Module, in_map: Optional[ChannelMap] = None,
                out_map: Optional[ChannelMap] = None, exact: bool = True,
                where: str = 'layer', *, mode: Optional[str] = None,
                noise: float = NET2WIDER_NOISE, generator: Optional[torch.Generator] = None) -> Growth:
    """Copy one layer of a small network into the matching, possibly wider, layer of a larger one.

    Args:
        src: the trained layer.
        dst: the layer to fill, of the same kind, each dimension at least as wide.
        in_map: where the source's input channels sit among the destination's (leading slice if
            None), and in ``net2wider`` mode which source channel each new input copies
            (:meth:`ChannelMap.sources`). Ignored by depthwise convolutions and norms.
        out_map: the same for output channels (and biases, norm channels).
        exact: zero the destination's weights from new inputs into the source's outputs (the
            ``exact`` and ``plain`` modes; ``mode`` overrides it).
        where: the layer's name, for error messages.
        mode: one of :data:`MODES`. In ``net2wider`` mode every destination output channel copies
            its source channel (weight rows, bias, norm affine and statistics), and each weight
            reading a copied input channel gets ``1 / copies`` of the source weight, so the layer
            maps replicated inputs to replicated outputs; nothing keeps its initialisation.
        noise: ``net2wider``: relative perturbation of the shares (zero sum over the copies of
            each input channel, so the output is unchanged) that breaks the copies' symmetry.
        generator: ``net2wider``: the random source of the noise (torch's global one if None).
    """
    mode = resolve_mode(exact, mode)
    check_same_layer(src, dst, where)
    if isinstance(dst, (nn.Conv2d, nn.Linear)):
        return _grow_weighted(src, dst, in_map, out_map, mode, where, noise, generator)
    if norm_kind(dst) == 'batchnorm':
        return _grow_batchnorm(src, dst, out_map, mode, where)
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
                 maps: Optional[Mapping[str, MapPair]] = None, exact: bool = True, *,
                 mode: Optional[str] = None, noise: float = NET2WIDER_NOISE,
                 generator: Optional[torch.Generator] = None) -> Dict[str, Growth]:
    """Grow every layer of ``dst`` from the layer of ``src`` that ``rename`` names.

    Args:
        src: the trained model.
        dst: the model to fill; modules are matched by name.
        rename: destination module name -> source module name, or None for a module that has no
            source (it keeps its initialisation). Names missing from ``src`` count as new too.
        maps: destination module name -> (input map, output map) where a dimension is not the
            leading slice (concatenated inputs).
        exact: zero the weights through which new channels would reach source channels.
        mode, noise, generator: as for :func:`grow_module` (``mode`` overrides ``exact``). In
            ``net2wider`` mode tensors combined elementwise must have equal maps: maps that are
            None (leading slices) depend only on the two sizes, so they do.

    Returns:
        destination module name -> :class:`Growth`, for every module that owns tensors.
    """
    mode = resolve_mode(exact, mode)
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
        result[name] = grow_module(theirs[counterpart], module, in_map, out_map, where=name,
                                   mode=mode, noise=noise, generator=generator)
    return result
