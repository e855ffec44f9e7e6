"""Descriptions of the feature maps a model returns, in one vocabulary for every adapter.

:class:`FeatureInfo` answers the three ways users ask:

- attributes, ``model.feature_info[0].channels`` / ``.stride`` / ``.level`` / ``.module``;
- timm's ``features_only`` interface, ``feature_info.channels()``, ``.reduction()``,
  ``.module_name()`` and entries with the keys ``num_chs``, ``reduction`` and ``module``;
- torchvision-style dicts, ``info['name']`` / ``info['stride']`` / ``info['channels']`` (the FPN
  levels 'p3' ... 'p7').
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload

__all__ = ['TapInfo', 'FeatureInfo']


@dataclass(frozen=True)
class TapInfo:
    """One returned feature map.

    Attributes:
        level: feature level; for backbones 0..4 (strides 2 ... 32), for FPN outputs the pyramid
            level (3 for P3 ...).
        channels: channels of the map.
        stride: reduction of the input size (after any output-stride dilation).
        module: dotted name of the module whose output this is (``taps.1`` when an scSE head
            refines the stage output, else ``stages.2``; ``fpn.layer_blocks.0`` for P3).
        name: a short name ('p3'); defaults to ``level<k>``.
    """

    level: int
    channels: int
    stride: int
    module: str
    name: Optional[str] = None

    # timm's and torchvision's names for the same fields
    _ALIASES = {'num_chs': 'channels', 'reduction': 'stride', 'index': 'level'}

    def __getitem__(self, key: str) -> Any:
        """Dict-style access: ``num_chs``/``channels``, ``reduction``/``stride``, ``module``,
        ``level``/``index``, ``name``."""
        field = self._ALIASES.get(key, key)
        if field == 'name':
            return self.label
        if field not in ('level', 'channels', 'stride', 'module'):
            raise KeyError(f'feature info has no key {key!r}; keys: {", ".join(self.keys())}')
        return getattr(self, field)

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]``, or ``default`` for an unknown key."""
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> Tuple[str, ...]:
        """The keys dict-style access accepts."""
        return ('num_chs', 'reduction', 'module', 'level', 'channels', 'stride', 'name')

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    @property
    def label(self) -> str:
        """``name`` if given, else ``level<k>``."""
        return self.name if self.name is not None else f'level{self.level}'

    def to_dict(self) -> Dict[str, Any]:
        """timm's dict form: ``num_chs``, ``reduction``, ``module`` (plus ``level`` and ``name``)."""
        return dict(num_chs=self.channels, reduction=self.stride, module=self.module,
                    level=self.level, name=self.label)


Index = Union[None, int, Sequence[int]]


class FeatureInfo(Sequence[TapInfo]):
    """The feature maps of a model, shallow to deep: a sequence of :class:`TapInfo` with timm's
    ``channels()`` / ``reduction()`` / ``module_name()`` / ``get_dicts()`` methods."""

    def __init__(self, taps: Sequence[TapInfo]) -> None:
        self._taps: Tuple[TapInfo, ...] = tuple(taps)

    @overload
    def __getitem__(self, index: int) -> TapInfo: ...

    @overload
    def __getitem__(self, index: slice) -> 'FeatureInfo': ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return FeatureInfo(self._taps[index])
        return self._taps[index]

    def __len__(self) -> int:
        return len(self._taps)

    def __iter__(self) -> Iterator[TapInfo]:
        return iter(self._taps)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FeatureInfo):
            return self._taps == other._taps
        if isinstance(other, (tuple, list)):
            return list(self._taps) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._taps)

    def __repr__(self) -> str:
        return f'FeatureInfo({list(self._taps)!r})'

    def get(self, key: str, idx: Index = None) -> Union[Any, List[Any]]:
        """Field ``key`` of every entry (a list), or of entry ``idx`` (one value or a list)."""
        if idx is None:
            return [tap[key] for tap in self._taps]
        if isinstance(idx, int):
            return self._taps[idx][key]
        return [self._taps[i][key] for i in idx]

    def channels(self, idx: Index = None) -> Union[int, List[int]]:
        """Channels of each map (timm's ``feature_info.channels()``)."""
        return self.get('channels', idx)

    def reduction(self, idx: Index = None) -> Union[int, List[int]]:
        """Stride of each map (timm's ``feature_info.reduction()``)."""
        return self.get('stride', idx)

    def module_name(self, idx: Index = None) -> Union[str, List[str]]:
        """Name of the module producing each map (timm's ``feature_info.module_name()``)."""
        return self.get('module', idx)

    def levels(self) -> List[int]:
        """Feature level of each map."""
        return self.get('level')

    def get_dicts(self, keys: Optional[Sequence[str]] = None, idx: Index = None) -> List[Dict[str, Any]]:
        """timm's dict form of each map, restricted to ``keys`` if given."""
        indices = range(len(self)) if idx is None else ([idx] if isinstance(idx, int) else idx)
        dicts = [self._taps[i].to_dict() for i in indices]
        return dicts if keys is None else [{key: d[key] for key in keys} for d in dicts]
