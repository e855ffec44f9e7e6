"""Catch config key typos before anything is built, naming the key and what was expected.

Two checks: a top-level key that is not a known Runner key but looks like one
(``train_dataloder``), and, for every ``dict(type='effnet_backbones.X', ...)`` anywhere in the
config, a key that ``X`` does not accept (``model.num_clases``).
"""
from __future__ import annotations

import difflib
import inspect
import typing
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from mmengine.config import Config

from effnet_backbones.registry import DATASETS, HOOKS, METRICS, MODELS, SCOPE

__all__ = ['ConfigKeyError', 'RUNNER_KEYS', 'check_config']

#: Top-level keys MMEngine's Runner and config system read, plus this project's own.
RUNNER_KEYS = frozenset({
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg',
    'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper', 'param_scheduler', 'val_evaluator',
    'test_evaluator', 'default_hooks', 'custom_hooks', 'data_preprocessor', 'load_from',
    'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level', 'visualizer', 'default_scope',
    'randomness', 'experiment_name', 'custom_imports', 'cpu_profile', 'cpu_allocator',
    'cpu_kernel_cache', 'task', 'data_root', 'init_from', 'progressive', 'compile',
})
SIMILARITY = 0.85
OUR_REGISTRIES = (MODELS, DATASETS, METRICS, HOOKS)


class ConfigKeyError(KeyError):
    """A config key is unknown where a known one was expected."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ''


def _named(params) -> set:
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _takes_any(params) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in params)


def _class_keys(cls: type) -> Optional[set]:
    """Keyword arguments ``cls`` accepts (following ``**kwargs`` to base classes); None = any."""
    keys: set = set()
    for klass in cls.__mro__:
        if klass is object or '__init__' not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        keys |= _named(params)
        if not _takes_any(params):
            return keys - {'self'}
    return None


def _accepted_keys(target: Callable) -> Optional[set]:
    """Keyword arguments a registered class or builder function accepts; None = any.

    A builder's ``**kwargs`` are followed to the class it is annotated to return (the library
    registers ``EfficientNet`` as its builder, whose ``**options`` are the class's arguments).
    """
    if inspect.isclass(target):
        return _class_keys(target)
    params = inspect.signature(target).parameters.values()
    if not _takes_any(params):
        return _named(params)
    try:
        returned = typing.get_type_hints(target).get('return')
    except Exception:  # unresolvable annotations: accept anything rather than guess
        returned = None
    forwarded = _class_keys(returned) if inspect.isclass(returned) else None
    return None if forwarded is None else _named(params) | forwarded


def _our_entry(type_name: str) -> Optional[Callable]:
    if not type_name.startswith(SCOPE + '.'):
        return None
    name = type_name[len(SCOPE) + 1:]
    for registry in OUR_REGISTRIES:
        if name in registry.module_dict:
            return registry.module_dict[name]
    return None


def _typed_dicts(node: Any, path: str) -> Iterator[Tuple[str, Dict[str, Any]]]:
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield path, node
        for key, value in node.items():
            yield from _typed_dicts(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _typed_dicts(value, f'{path}.{index}')


def _check_top_level(cfg: Config) -> List[str]:
    problems = []
    for key in cfg.keys():
        if key in RUNNER_KEYS or key.startswith('_'):
            continue
        close = difflib.get_close_matches(key, sorted(RUNNER_KEYS), n=1, cutoff=SIMILARITY)
        if close:
            problems.append(f"unknown top-level config key '{key}'; did you mean '{close[0]}'?")
    return problems


def _check_typed(cfg: Config) -> List[str]:
    problems = []
    for path, node in _typed_dicts(cfg.to_dict(), ''):
        entry = _our_entry(node['type'])
        accepted = _accepted_keys(entry) if entry is not None else None
        if accepted is None:
            continue
        for key in node:
            if key != 'type' and key not in accepted:
                problems.append(f"unknown key '{path}.{key}' for {node['type']}"
                                f'{_suggest(key, accepted)} (valid: {", ".join(sorted(accepted))})')
    return problems


def check_config(cfg: Config) -> None:
    """Raise :class:`ConfigKeyError` listing every suspicious key in ``cfg``."""
    problems = _check_top_level(cfg) + _check_typed(cfg)
    if problems:
        raise ConfigKeyError('config ' + (cfg.filename or '') + ':\n  ' + '\n  '.join(problems))
