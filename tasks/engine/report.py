"""Metrics as a printable table and as flat JSON."""
from __future__ import annotations

import json
import math
from typing import Dict, Mapping

__all__ = ['metrics_table', 'write_metrics_json']


def _format(value: float) -> str:
    return 'nan' if isinstance(value, float) and math.isnan(value) else f'{value:.4f}'


def metrics_table(metrics: Mapping[str, float]) -> str:
    """Two-column text table: summary keys first, then ``<metric>.<class>`` keys grouped by class.

    ``Dice.nucleus`` and ``IoU.nucleus`` become one row ``nucleus`` with a column each.
    """
    summary = {key: value for key, value in metrics.items() if '.' not in key}
    per_class: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        if '.' in key:
            metric, name = key.split('.', 1)
            per_class.setdefault(name, {})[metric] = value
    lines = []
    if per_class:
        columns = sorted({metric for row in per_class.values() for metric in row})
        width = max(len(name) for name in per_class) + 2
        lines.append('class'.ljust(width) + ''.join(column.rjust(10) for column in columns))
        for name, row in per_class.items():
            cells = (_format(row.get(column, float('nan'))).rjust(10) for column in columns)
            lines.append(name.ljust(width) + ''.join(cells))
        lines.append('')
    width = max((len(key) for key in summary), default=0) + 2
    lines += [key.ljust(width) + _format(value) for key, value in summary.items()]
    return '\n'.join(lines)


def write_metrics_json(metrics: Mapping[str, float], path: str) -> None:
    """Write metrics as one flat JSON object (NaN as null, which JSON can represent)."""
    clean = {key: (None if isinstance(value, float) and math.isnan(value) else value)
             for key, value in metrics.items()}
    with open(path, 'w') as handle:
        json.dump(clean, handle, indent=2)
