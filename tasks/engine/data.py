"""Configs that take what the data holds: each task registers how it reads its data's classes and
channels into a config (``register_data_resolver``); the runner calls it before building anything.

A resolver fills the keys a config leaves ``None`` (dataset ``classes`` / ``in_channels``, the
model's ``num_classes`` / ``in_channels``) from the data, or, for evaluation and inference, from
the training checkpoint's ``meta['dataset_meta']``; keys the config sets are checked against the
data, and a disagreement is an error naming the file, the key and both values.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from mmengine.config import Config, ConfigDict

from .config import DATALOADER_KEYS

__all__ = ['DataResolver', 'register_data_resolver', 'resolve_from_data', 'datasets_of',
           'follow_the_data']

#: resolver(cfg, checkpoint_meta) -> None; changes ``cfg`` in place
DataResolver = Callable[[Config, Optional[Mapping[str, Any]]], None]
_RESOLVERS: Dict[str, DataResolver] = {}


def register_data_resolver(task: str, resolver: DataResolver) -> None:
    """Make configs with ``task = '<task>'`` resolve their data with ``resolver``."""
    _RESOLVERS[task] = resolver


def resolve_from_data(cfg: Config, checkpoint_meta: Optional[Mapping[str, Any]] = None) -> None:
    """Fill and check the config's data-dependent keys with its task's resolver (if it has one)."""
    resolver = _RESOLVERS.get(cfg.get('task'))
    if resolver is not None:
        resolver(cfg, checkpoint_meta)


def datasets_of(cfg: Config, types: Sequence[str]) -> List[Tuple[str, ConfigDict]]:
    """``(dataloader key, dataset config)`` of every dataloader whose dataset type is in ``types``."""
    return [(key, cfg[key].dataset) for key in DATALOADER_KEYS
            if (cfg.get(key) or {}).get('dataset', {}).get('type') in types]


def follow_the_data(node: Any, key: str, value: Any, evidence: str) -> None:
    """Set ``node[last part of key]`` to ``value`` if the config left it None, else check it.

    Args:
        node: the config dict holding the key (``cfg.model``, ``cfg.model.backbone``).
        key: its dotted name under ``model``, for the message (``'backbone.in_chans'``).
        value: what the data gives.
        evidence: where the value comes from, for the message.
    """
    name = key.split('.')[-1]
    given = node.get(name)
    if given is None:
        node[name] = value
    elif given != value:
        from tasks.common.io import DataError

        raise DataError(f'model.{key}={given} but the data gives {value} ({evidence}); remove '
                        f'model.{key} from the config to follow the data')
