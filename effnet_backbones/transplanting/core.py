"""The entry points: :func:`transplant` and :func:`grow_backbone`, and :func:`max_difference` to
check a transplant (a :class:`Difference`)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..backbone import EfficientNet
from ..growth import MODES, NET2WIDER_NOISE, ChannelMap, TransplantError, grow_modules, resolve_mode
from ..spec import TAP_STAGES
from .maps import add_identities, channel_maps, check_smp_decoders
from .pairing import Backbone, check_pair, describe_model, pair_backbones, renamer, tap_renames
from .report import TransplantReport, collect_parts
from .sources import source_model

__all__ = ['MODES', 'PRESERVING', 'COMPARED_CHANNELS', 'Difference', 'transplant', 'grow_backbone',
           'max_difference']

#: Modes that keep the source's function (and so add identities for appended blocks and taps).
PRESERVING = ('exact', 'net2wider')
#: ``channels`` choices of :func:`max_difference`.
COMPARED_CHANNELS = ('source', 'all')


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

def _full_renamer(pairs: Mapping[str, Tuple[Backbone, Backbone]]) -> Callable[[str], Optional[str]]:
    table: Dict[str, Optional[str]] = {}
    for prefix, (src, dst) in pairs.items():
        table.update(tap_renames(src, dst, prefix))
    return renamer(table)


@torch.no_grad()
def transplant(src: Any, dst: nn.Module, mode: str = 'exact', source: str = 'auto', *,
               noise: float = NET2WIDER_NOISE, seed: int = 0) -> TransplantReport:
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
        mode: 'exact' (the grown model computes the source's outputs on the source's channels;
            new channels keep their initialisation), 'net2wider' (Net2WiderNet: every new channel
            replicates a source channel, so *every* destination channel computes the source
            channel it copies, see :meth:`~effnet_backbones.growth.ChannelMap.sources`, and
            outputs whose width does not grow, such as logits, are the source's) or 'plain' (copy
            the overlapping slices only).
        source: how to read a checkpoint ``src``: 'auto', 'torchvision', 'timm', 'timm_tf',
            'effnet_backbones'.
        noise: 'net2wider': relative symmetry-breaking noise on the split weights (it keeps the
            function; with 0 the copies of a channel get equal gradients and stay equal).
        seed: 'net2wider': seed of that noise, so a transplant is reproducible.

    Returns:
        A :class:`TransplantReport`: per part the parameters copied and zeroed, and per stage
        which source block fed which destination block. In 'net2wider' mode ``copied`` counts
        every element filled from the source (replicas and split weights included).

    Raises:
        TransplantError: a smaller destination, different settings, missing taps, a checkpoint
            that is not an EfficientNet, or models of different kinds; the message names both.
    """
    preserving = resolve_mode(mode=mode) in PRESERVING
    src = source_model(src, dst, source)
    pairs = pair_backbones(src, dst)
    for name, (theirs, ours) in pairs.items():
        check_pair(theirs, ours, name)
    if preserving:
        check_smp_decoders(dst, mode)
    try:
        growth = grow_modules(src, dst, rename=_full_renamer(pairs), maps=channel_maps(src, dst),
                              mode=mode, noise=noise, generator=torch.Generator().manual_seed(seed))
    except TransplantError as err:  # a layer-level problem: say which two models it concerns
        raise TransplantError(f'{describe_model(src)} -> {describe_model(dst)}: {err}') from None
    if preserving:
        for prefix, (theirs, ours) in pairs.items():
            add_identities(theirs, ours, prefix, growth)
    return TransplantReport(source=describe_model(src), destination=describe_model(dst),
                            mode=mode, parts=collect_parts(growth, pairs))


def grow_backbone(src: Any, arch: str, mode: str = 'exact', source: str = 'auto', *,
                  noise: float = NET2WIDER_NOISE, seed: int = 0,
                  **options: Any) -> Tuple[EfficientNet, TransplantReport]:
    """Build the ``arch`` variant of a trained backbone, with its settings, and transplant into it.

    Args:
        src: an :class:`EfficientNet`, or a checkpoint: our own file rebuilds the saved backbone
            (taps, scSE, settings); torchvision and timm weights give a backbone with every tap.
        arch: the larger variant, 'b0' ... 'b7'.
        mode: one of :data:`MODES` ('exact', 'plain', 'net2wider'), as for :func:`transplant`.
        source: how to read a checkpoint ``src``, as for :func:`transplant`.
        noise, seed: 'net2wider' symmetry-breaking noise, as for :func:`transplant`.
        **options: :class:`EfficientNet` options that differ from the source's (``drop_path_rate``,
            ``out_indices`` drawn from the source's, ...).

    Returns:
        The grown backbone and the :class:`TransplantReport`.
    """
    if not isinstance(src, EfficientNet):
        from ..factory import create_backbone
        from ..weights import WeightsError, checkpoint_config

        try:
            extra = {} if checkpoint_config(src) else dict(out_indices=tuple(range(len(TAP_STAGES))))
            src = create_backbone(pretrained=src, source=source, **extra)
        except (WeightsError, ValueError) as err:
            raise TransplantError(f'cannot grow {src!r} into efficientnet_{arch}: {err}') from err
    dst = EfficientNet(**{**src.config, **options, 'arch': arch})
    return dst, transplant(src, dst, mode=mode, noise=noise, seed=seed)


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


class Difference(float):
    """What :func:`max_difference` measured: a ``float`` (the largest absolute difference), so
    callers comparing it with a tolerance keep working, with what was compared attached.

    Attributes:
        relative: the worst, over the output tensors, of max |difference| / max |source output|
            (0 when both are 0, infinite when only the source's is): the figure to hold against a
            tolerance, since activations range from 1e-13 (uncalibrated eval-mode networks) to
            ~100.
        scope: which channels were compared: 'whole tensors' when every pair of outputs had equal
            shapes, else 'source channels (leading N of M, ... on dim 1)' or 'every channel
            against the source channel it replicates (N -> M, ... on dim 1)'.
    """

    relative: float
    scope: str

    def __new__(cls, value: float, relative: float, scope: str) -> 'Difference':
        self = super().__new__(cls, value)
        self.relative, self.scope = relative, scope
        return self

    def describe(self) -> str:
        """'max |difference| 1.2e-06 (relative 3.4e-07) over <scope>', for messages and logs."""
        return f'max |difference| {float(self):.3g} (relative {self.relative:.3g}) over {self.scope}'


def _aligned(theirs: torch.Tensor, ours: torch.Tensor, channels: str) \
        -> Tuple[torch.Tensor, torch.Tensor, str]:
    """The pair to compare and its label ('N of M' or 'N -> M' channels; 'whole' for tensors
    without channels). 'source' keeps the leading slice of ``ours``; 'all' gathers, for every
    destination channel, the source channel it replicates from ``theirs``."""
    if theirs.dim() < 2:
        return theirs, ours, 'whole'
    src_size, dst_size = theirs.shape[1], ours.shape[1]
    if src_size > dst_size:
        raise TransplantError(f'a source output has {src_size} channels and the destination\'s '
                              f'{dst_size}; compare a model with one at least as wide')
    if channels == 'source':
        return theirs, ours[:, :src_size], f'{src_size} of {dst_size}'
    replicated = torch.tensor(ChannelMap.leading(src_size, dst_size).sources(), device=theirs.device)
    return theirs[:, replicated], ours, f'{src_size} -> {dst_size}'


def _relative(difference: float, scale: float) -> float:
    if scale == 0.0:
        return 0.0 if difference == 0.0 else float('inf')
    return difference / scale


def _scope(labels: Sequence[str], channels: str, grown: bool) -> str:
    if not grown:
        return 'whole tensors'
    listed = ', '.join(labels)
    if channels == 'source':
        return f'source channels (leading {listed} on dim 1)'
    return f'every channel against the source channel it replicates ({listed} on dim 1)'


def max_difference(src: nn.Module, dst: nn.Module, inputs: torch.Tensor,
                   channels: str = 'source') -> Difference:
    """How far the destination's outputs are from the source's on ``inputs``, both in eval mode
    (their training flags restored afterwards): 0 up to rounding after a function-preserving
    transplant.

    Outputs (a tensor, or the tensors of a list, tuple or dict, in order) are compared pairwise in
    float64. Where a destination output is wider on dimension 1 (the channels of a backbone tap):

    - ``channels='source'``: only its leading slice, the source's own channels, is compared; what
      an ``exact`` transplant guarantees.
    - ``channels='all'``: every destination channel ``j`` is compared with source channel
      ``g(j)``, ``g`` the deterministic ``net2wider`` replication map of the two widths
      (:meth:`~effnet_backbones.growth.ChannelMap.sources` of ``ChannelMap.leading(N, M)``); what
      a ``net2wider`` transplant guarantees. (An output that is itself a concatenation of growing
      tensors would need its concatenated map; no model output here is one.)

    Returns:
        A :class:`Difference`: the largest absolute difference as a float, with ``.relative``
        (per tensor max |difference| / max |source|, worst tensor) and ``.scope`` (what was
        compared: 'whole tensors' when all shapes were equal).

    Raises:
        TransplantError: the models return different numbers of tensors, or a destination output
            is narrower than the source's.
        ValueError: ``channels`` is not 'source' or 'all'.
    """
    if channels not in COMPARED_CHANNELS:
        raise ValueError(f'channels must be one of {COMPARED_CHANNELS}, got {channels!r}')
    theirs, ours = _eval_outputs(src, inputs), _eval_outputs(dst, inputs)
    if len(theirs) != len(ours):
        raise TransplantError(f'the source returns {len(theirs)} tensors and the destination '
                              f'{len(ours)}; compare models with the same outputs')
    worst = relative = 0.0
    labels: List[str] = []
    grown = any(a.shape != b.shape for a, b in zip(theirs, ours))
    for a, b in zip(theirs, ours):
        a, b, label = _aligned(a, b, channels)
        labels.append(label)
        difference = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
        scale = a.double().abs().max().item() if a.numel() else 0.0
        worst = max(worst, difference)
        relative = max(relative, _relative(difference, scale))
    return Difference(worst, relative, _scope(labels, channels, grown))
