"""The entry points: :func:`transplant` and :func:`grow_backbone`, and :func:`max_difference` to
check a transplant."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from ..backbone import EfficientNet
from ..growth import TransplantError, grow_modules
from ..spec import TAP_STAGES
from .maps import add_identities, channel_maps, check_smp_decoders
from .pairing import Backbone, check_pair, describe_model, pair_backbones, renamer, tap_renames
from .report import TransplantReport, collect_parts
from .sources import source_model

MODES = ('exact', 'plain')


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
        table.update(tap_renames(src, dst, prefix))
    return renamer(table)


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
    src = source_model(src, dst, source)
    pairs = pair_backbones(src, dst)
    for name, (theirs, ours) in pairs.items():
        check_pair(theirs, ours, name)
    if exact:
        check_smp_decoders(dst)
    try:
        growth = grow_modules(src, dst, rename=_full_renamer(pairs), maps=channel_maps(src, dst),
                              exact=exact)
    except TransplantError as err:  # a layer-level problem: say which two models it concerns
        raise TransplantError(f'{describe_model(src)} -> {describe_model(dst)}: {err}') from None
    if exact:
        for prefix, (theirs, ours) in pairs.items():
            add_identities(theirs, ours, prefix, growth)
    return TransplantReport(source=describe_model(src), destination=describe_model(dst),
                            mode=mode, parts=collect_parts(growth, pairs))


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
        from ..factory import create_backbone
        from ..weights import WeightsError, checkpoint_config

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
