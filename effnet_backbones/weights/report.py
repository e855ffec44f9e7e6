"""What loading did with each tensor (:class:`LoadReport`), and the messages describing mismatches."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, FrozenSet, List, Mapping, Optional, Sequence

import torch

from .checkpoint import first_keys
from .keys import variant_text
from .stem import stem_adaptable

__all__ = ['LoadReport', 'BuiltParts', 'MAY_STAY_AT_INIT', 'wrong_shapes', 'mismatches',
           'required_missing', 'log_report']

logger = logging.getLogger('effnet_backbones.weights')
Tensor = torch.Tensor
#: Keys whose absence from a checkpoint is harmless: scSE taps exist only in our models, and
#: ``num_batches_tracked`` only matters for BN with ``momentum=None``.
MAY_STAY_AT_INIT = re.compile(r'^taps\.|\.num_batches_tracked$')


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each tensor.

    Attributes:
        checkpoint: the file, URL, hub name or '<state dict>'.
        source: the source its keys were read as.
        variant: the model's variant ('b4'), which the checkpoint's shapes were checked to fit.
        loaded: our keys copied into the model.
        skipped: checkpoint tensors of parts the model does not build (deeper stages, the head,
            the classifier, taps), in our names.
        missing: model tensors the checkpoint does not hold, left at their initialisation
            (scSE taps, ``num_batches_tracked``, or anything when ``strict=False``).
        unexpected: checkpoint keys that name no EfficientNet layer, in the checkpoint's names.
        adapted: keys changed to fit the model (the stem for ``in_chans`` other than 3).
        notes: warnings about settings that make outputs differ from the source.
    """

    checkpoint: str
    source: str
    variant: str
    loaded: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    adapted: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for logs."""
        head = (f"loaded {len(self.loaded)} tensors from '{self.checkpoint}' ({self.source}, "
                f"{variant_text([self.variant])})")
        parts = [head]
        if self.skipped:
            parts.append(f'skipped {len(self.skipped)} of parts not built '
                         f'({", ".join(sorted({_top_part(k) for k in self.skipped}))})')
        if self.missing:
            parts.append(f'left {len(self.missing)} at init ({first_keys(self.missing, 4)})')
        if self.adapted:
            parts.append(f'adapted {", ".join(self.adapted)}')
        if self.unexpected:
            parts.append(f'ignored {len(self.unexpected)} unexpected keys ({first_keys(self.unexpected)})')
        return '; '.join(parts)


def _top_part(key: str) -> str:
    parts = key.split('.')
    return '.'.join(parts[:2]) if parts[0] in ('stages', 'taps') else parts[0]


@dataclass(frozen=True)
class BuiltParts:
    """The top-level parts (stem, head, classifier, taps) and the number of stages a model built."""

    parts: FrozenSet[str]
    stages: int

    @classmethod
    def of(cls, model_keys: Mapping[str, Any]) -> 'BuiltParts':
        stages = {int(key.split('.')[1]) for key in model_keys if key.startswith('stages.')}
        return cls(frozenset(key.split('.')[0] for key in model_keys),
                   max(stages) + 1 if stages else 0)

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` lies in a part of the network that the model built."""
        parts = key.split('.')
        if parts[0] == 'stages':
            return int(parts[1]) < self.stages
        return parts[0] in self.parts


def _shape_text(value: Optional[Tensor]) -> str:
    return 'absent' if value is None else str(list(value.shape))


def _described(key: str, origin: Mapping[str, str]) -> str:
    theirs = origin.get(key, key)
    return key if theirs == key else f'{key} ({theirs} in the checkpoint)'


def wrong_shapes(ours: Mapping[str, Tensor], target: Mapping[str, Tensor],
                  origin: Mapping[str, str]) -> List[str]:
    """Keys present in both whose shapes differ (beyond a stem that ``in_chans`` adapts)."""
    return [f'{_described(key, origin)}: checkpoint {_shape_text(ours[key])}, '
            f'model {_shape_text(value)}'
            for key, value in target.items()
            if key in ours and ours[key].shape != value.shape
            and not stem_adaptable(key, ours[key], value)]


def mismatches(ours: Mapping[str, Tensor], target: Mapping[str, Tensor],
                origin: Mapping[str, str]) -> List[str]:
    """Lines describing every key of the built network that differs between checkpoint and model."""
    built = BuiltParts.of(target)
    absent = [f'{key}: not in the checkpoint' for key in target
              if key not in ours and not MAY_STAY_AT_INIT.search(key)]
    extra = [f'{_described(key, origin)}: not in the model' for key in ours
             if key not in target and key in built and not MAY_STAY_AT_INIT.search(key)]
    return wrong_shapes(ours, target, origin) + absent + extra


def required_missing(missing: Sequence[str]) -> List[str]:
    """The missing keys that a checkpoint was expected to hold (not taps, not BN counters)."""
    return [key for key in missing if not MAY_STAY_AT_INIT.search(key)]


def log_report(report: LoadReport) -> None:
    logger.info(report.summary())
    if report.unexpected:
        logger.warning("checkpoint '%s' (%s, %s): %d keys match no layer of the model and were "
                       "ignored: %s", report.checkpoint, report.source,
                       variant_text([report.variant]),
                       len(report.unexpected), first_keys(report.unexpected))
    required = required_missing(report.missing)
    if required:
        logger.warning("checkpoint '%s' lacks %d tensors, left at init: %s", report.checkpoint,
                       len(required), first_keys(required))
    for note in report.notes:
        logger.warning("checkpoint '%s': %s", report.checkpoint, note)

