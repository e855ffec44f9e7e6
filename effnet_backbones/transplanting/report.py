"""What a transplant did, part by part (:class:`TransplantReport`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple


from ..growth import Growth
from .maps import stage_sources
from .pairing import Backbone, join_name

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PartReport:
    """One part of the destination (stem, a stage, taps, decoder, ...), counted in parameter elements.

    Attributes:
        name: module path of the part ('stages.3', 'encoder.backbone.stem', 'decoder').
        params: parameter elements of the destination part.
        copied: of them, elements that now hold source values: in 'exact' and 'plain' mode the
            source's elements, one for one; in 'net2wider' mode every element filled from the
            source (the source's positions, the replicas of new channels, the split weights), so
            it may exceed the source's parameter count.
        zeroed: of them, elements set to zero to keep the source's channels and outputs exact (in
            'net2wider' mode only the identities of appended blocks and added scSE taps).
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
    destination's parameter count and their ``copied`` to :attr:`copied`. What ``copied`` and
    ``zeroed`` count depends on ``mode``; see :class:`PartReport`.
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
# Parts of the report
# ---------------------------------------------------------------------------------------------

def _part_of(name: str, backbones: Sequence[str]) -> str:
    """The report part a module belongs to: a backbone's stem, stage, taps or head, or the
    outermost module around it that holds no backbone (the decoder, a head, an FPN)."""
    for prefix in backbones:
        if prefix == '' or name == prefix or name.startswith(f'{prefix}.'):
            inner = name[len(prefix):].lstrip('.').split('.')
            depth = 2 if inner[0] == 'stages' else 1
            return join_name(prefix, '.'.join(inner[:depth]))
    parts = name.split('.')
    for depth in range(1, len(parts) + 1):
        candidate = '.'.join(parts[:depth])
        if not any(b.startswith(f'{candidate}.') for b in backbones):
            return candidate
    return name


def collect_parts(growth: Mapping[str, Growth], backbones: Mapping[str, Tuple[Backbone, Backbone]]) \
        -> Tuple[PartReport, ...]:
    totals: Dict[str, List[int]] = {}
    for name, counts in growth.items():
        entry = totals.setdefault(_part_of(name, list(backbones)), [0, 0, 0])
        entry[0] += counts.params
        entry[1] += counts.copied
        entry[2] += counts.zeroed
    sources = {join_name(prefix, f'stages.{s}'): blocks
               for prefix, (src, dst) in backbones.items()
               for s, blocks in enumerate(stage_sources(src, dst))}
    return tuple(PartReport(name, *counts, sources=sources.get(name, ()))
                 for name, counts in totals.items())


