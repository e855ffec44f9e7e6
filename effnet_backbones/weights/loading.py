"""Loading EfficientNet weights into a model: rename, check the variant, adapt the stem, report."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import torch
import torch.nn as nn

from .checkpoint import MAX_LISTED, Checkpoint, StateDict, WeightsError, first_keys
from .keys import describe_shapes, layout_name, to_ours, variant_text, variants_of
from .read import CheckpointLike, read_checkpoint, select_prefix
from .report import (BuiltParts, LoadReport, log_report, mismatches,
                     required_missing, wrong_shapes)
from .sources import settle_source, source_settings
from .stem import STEM_WEIGHT, adapt_stem_weight, stem_adaptable

__all__ = ['load_pretrained']

Tensor = torch.Tensor


def _check_variant(model: nn.Module, ckpt: Checkpoint, source: str, ours: StateDict,
                   origin: Mapping[str, str], fits: List[str]) -> None:
    arch = getattr(model, 'arch', None)
    if arch in fits:
        return
    target = model.state_dict()
    lines = mismatches(ours, target, origin)
    looks = (f'looks like {variant_text(fits)}' if fits
             else f'does not look like any EfficientNet B0-B7 ({describe_shapes(ours)})')
    raise WeightsError(
        f"checkpoint '{ckpt.name}' ({source} keys) {looks}, but the model is "
        f"efficientnet_{arch}. Keys that do not match ({len(lines)}):\n  "
        + '\n  '.join(lines[:MAX_LISTED * 2]) + ('\n  ...' if len(lines) > MAX_LISTED * 2 else ''))


def _adapt_stem(ours: StateDict, target: Mapping[str, Tensor], report: LoadReport) -> None:
    key = STEM_WEIGHT
    if key in ours and key in target and ours[key].shape[1] != target[key].shape[1] \
            and stem_adaptable(key, ours[key], target[key]):
        ours[key] = adapt_stem_weight(ours[key], target[key].shape[1])
        report.adapted.append(f'{key} (3 -> {target[key].shape[1]} input channels)')


def _sort_keys(ours: StateDict, target: Mapping[str, Tensor], report: LoadReport) -> StateDict:
    """Fill the report's loaded / skipped / missing / unexpected lists; return what to load."""
    built = BuiltParts.of(target)
    to_load: StateDict = {}
    for key, value in ours.items():
        if key in target:
            to_load[key] = value
        elif key not in built or key.startswith('taps.'):
            report.skipped.append(key)
        elif key.endswith('num_batches_tracked'):
            continue  # the model's norm keeps no counter (frozen BN): nothing to load into
        else:
            report.unexpected.append(key)
    report.loaded = list(to_load)
    report.missing = [key for key in target if key not in ours]
    return to_load


def _check_missing(ckpt: Checkpoint, report: LoadReport, strict: bool) -> None:
    required = required_missing(report.missing)
    if required and strict:
        raise WeightsError(
            f"checkpoint '{ckpt.name}' ({report.source}, {variant_text([report.variant])}) "
            f"lacks {len(required)} tensors the model needs: {first_keys(required)}. The file may be "
            f"incomplete; pass strict=False to leave them at their initialisation")


def _setting_notes(model: nn.Module, source: str, config: Optional[Dict[str, Any]]) -> List[str]:
    """Differences between the model's padding / BN eps and those the weights were made with."""
    if not hasattr(model, 'padding') or not hasattr(model, 'norm_eps'):
        return []
    expected = (dict(config or {}) if source == 'effnet_backbones'
                else source_settings(source, model.arch))
    notes = []
    for name in ('padding', 'norm_eps'):
        if name in expected and getattr(model, name) != expected[name]:
            notes.append(f'{name}={getattr(model, name)!r} but the {source} weights were made with '
                         f'{name}={expected[name]!r}; outputs will differ from the source model')
    return notes


def load_pretrained(model: nn.Module, checkpoint: CheckpointLike, source: str = 'auto',
                    strict: bool = True, prefix: Optional[str] = None) -> LoadReport:
    """Load EfficientNet weights into ``model`` (an :class:`EfficientNet` backbone or classifier).

    Keys are renamed from torchvision's or timm's names to ours by module, the variant is checked
    from tensor shapes, the stem is adapted to the model's ``in_chans``, and only the parts the
    model built are loaded: deeper stages, the head and the classifier are skipped and reported.
    The report is also stored as ``model.load_report``.

    Args:
        model: the model to fill.
        checkpoint: a file (.pth, .pt, .bin, .ckpt, .safetensors), a state dict (optionally in a
            'state_dict' / 'model' wrapper, 'module.' prefixes allowed), a module, a hub name,
            a URL or ``True`` (see :func:`parse_hub_name`).
        source: 'auto' (recognise torchvision / timm / our keys; timm keys count as plain timm
            unless the name says 'tf_efficientnet'), 'torchvision', 'timm', 'timm_tf' or
            'effnet_backbones'.
        strict: raise if the checkpoint lacks tensors the model needs (other than scSE taps).
        prefix: load only the keys under this prefix, e.g. 'backbone.' of a whole detector or
            segmentation checkpoint (MMEngine's ``init_cfg=dict(..., prefix='backbone.')``).

    Raises:
        FileNotFoundError: the file does not exist.
        WeightsError: unreadable file, not an EfficientNet checkpoint, another variant, a
            ``source`` that disagrees with the keys, missing tensors, failed download.
    """
    ckpt = read_checkpoint(checkpoint, source, getattr(model, 'arch', None))
    if prefix:
        ckpt = select_prefix(ckpt, prefix)
    settled = settle_source(ckpt, source)
    ours, origin, unmatched = to_ours(ckpt.state_dict, layout_name(settled))
    fits = variants_of(ours)
    _check_variant(model, ckpt, settled, ours, origin, fits)
    report = LoadReport(checkpoint=ckpt.name, source=settled, variant=model.arch)
    target = model.state_dict()
    _adapt_stem(ours, target, report)
    wrong = wrong_shapes(ours, target, origin)
    if wrong:  # e.g. a 1-channel stem into an RGB model
        raise WeightsError(f"checkpoint '{ckpt.name}' ({settled}, {variant_text([report.variant])}) "
                           f"does not fit the model: {first_keys(wrong)}")
    to_load = _sort_keys(ours, target, report)
    report.unexpected = unmatched + [origin.get(key, key) for key in report.unexpected]
    _check_missing(ckpt, report, strict)
    report.notes = _setting_notes(model, settled, ckpt.config)
    model.load_state_dict(to_load, strict=False)
    log_report(report)
    model.load_report = report
    return report

