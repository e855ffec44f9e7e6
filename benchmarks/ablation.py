"""Ablations: train a recipe under combinations of switches with the same budget and seeds.

A switch is a dotted config key with the values to try, ``model.encoder_options.shortcut=None,
'resnet_d'``; a value may carry a short label for tables, ``custom_hooks=plain:[...],precise:[...]``. ``mode='grid'`` trains every combination; ``mode='each'`` trains the default (every
switch at its first value) and each other value of one switch at a time, which answers "what does
this switch do alone" at a cost that grows with the sum, not the product, of the value counts.
"""
from __future__ import annotations

import ast
import itertools
import re
from typing import Any, List, Sequence, Tuple

from .training_runs import Variant, nest_dotted

__all__ = ['Switch', 'parse_switch', 'ablation_variants', 'combination_variant',
           'ABLATION_MODES']

ABLATION_MODES = ('grid', 'each')
Switch = Tuple[str, List[Any]]


def _split_top_level(text: str) -> List[str]:
    """Split on commas outside brackets and quotes: ``(1, 2),None`` -> ``['(1, 2)', 'None']``."""
    parts, depth, quote, current = [], 0, None, ''
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in '\'"':
            quote = char
        elif char in '([{':
            depth += 1
        elif char in ')]}':
            depth -= 1
        elif char == ',' and depth == 0:
            parts.append(current)
            current = ''
            continue
        current += char
    parts.append(current)
    return [part.strip() for part in parts]


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string: resnet_d == 'resnet_d'


class Labelled:
    """A switch value with a short name for tables and folders (long literals, e.g. hook lists)."""

    def __init__(self, label: str, value: Any) -> None:
        self.label, self.value = label, value

    def __repr__(self) -> str:
        return self.label

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Labelled) and (self.label, self.value) == (other.label, other.value)


_LABELLED = re.compile(r'^([A-Za-z_][\w-]*):(.+)$', re.S)


def _value(text: str) -> Any:
    match = _LABELLED.match(text)
    if match:
        return Labelled(match.group(1), _literal(match.group(2)))
    return _literal(text)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Labelled) else value


def parse_switch(text: str) -> Switch:
    """``'KEY=V1,V2,...'`` -> ``(KEY, [V1, V2, ...])`` with Python literal values; ``label:V``
    gives a value a short label."""
    key, sep, values = text.partition('=')
    if not sep or not key.strip() or not values.strip():
        raise ValueError(f'--grid {text!r}: expected KEY=V1,V2,... e.g. '
                         f"model.encoder_options.shortcut=None,resnet_d")
    parsed = [_value(value) for value in _split_top_level(values)]
    if len(parsed) < 2:
        raise ValueError(f'--grid {text!r}: give at least two values to compare')
    return key.strip(), parsed


def _label(key: str, value: Any) -> str:
    short = key.split('.')[-1]
    return f'{short}={value}'.replace(' ', '').replace("'", '').replace('/', '_')


def ablation_variants(switches: Sequence[Switch], mode: str = 'grid') -> List[Variant]:
    """The variants to train: every combination (``grid``) or one change at a time (``each``,
    the first is the default: every switch at its first value)."""
    if mode not in ABLATION_MODES:
        raise ValueError(f'mode must be one of {ABLATION_MODES}, got {mode!r}')
    keys = [key for key, _ in switches]
    if len(set(keys)) != len(keys):
        raise ValueError(f'a switch is given twice: {keys}')
    if mode == 'grid':
        combos = [dict(zip(keys, values)) for values in
                  itertools.product(*(values for _, values in switches))]
    else:
        default = {key: values[0] for key, values in switches}
        combos = [default] + [dict(default, **{key: value})
                              for key, values in switches for value in values[1:]]
    variants = []
    for index, combo in enumerate(combos):
        if mode == 'each':  # named by what differs from the default
            changed = [_label(key, value) for key, value in combo.items()
                       if index and value != combos[0][key]]
            name = '+'.join(changed) or 'default'
        else:
            name = '+'.join(_label(key, value) for key, value in combo.items())
        variants.append(Variant(name, nest_dotted({key: _plain(v) for key, v in combo.items()})))
    return variants




def combination_variant(switches: Sequence[Switch], text: str) -> Variant:
    """One extra variant, ``'KEY=V+KEY=V'``: the listed switches at the given values (a label or
    a literal among the switch's values), every other switch at its first value. It answers "and
    together?" after a one-at-a-time ablation, without training the whole grid."""
    values = {key: list(options) for key, options in switches}
    combo = {key: options[0] for key, options in switches}
    labels = []
    for part in text.split('+'):
        key, sep, value_text = part.partition('=')
        matches = [key_ for key_ in values if key_ == key or key_.split('.')[-1] == key]
        if not sep or len(matches) != 1:
            raise ValueError(f'--combo {text!r}: {part!r} must be KEY=VALUE with KEY one of the '
                             f'--grid keys ({", ".join(values)})')
        key = matches[0]
        wanted = _value(value_text)
        found = [v for v in values[key] if v == wanted or
                 (isinstance(v, Labelled) and v.label == value_text) or _plain(v) == wanted]
        if not found:
            raise ValueError(f'--combo {text!r}: {value_text!r} is not one of the values of {key}: '
                             f'{values[key]}')
        combo[key] = found[0]
        labels.append(_label(key, found[0]))
    return Variant('+'.join(labels), nest_dotted({key: _plain(v) for key, v in combo.items()}))
