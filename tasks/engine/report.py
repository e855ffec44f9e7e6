"""Metrics as a printable table and as flat JSON."""
from __future__ import annotations

import json
import math
from typing import Dict, List, Mapping

__all__ = ['metrics_table', 'write_metrics_json', 'CASE_PREFIX']

#: volume metrics' per-case keys start with this: ``case/<case>/Dice.<class>``
CASE_PREFIX = 'case/'


def _format(value: float) -> str:
    return 'nan' if isinstance(value, float) and math.isnan(value) else f'{value:.4f}'


def _per_case_table(metrics: Mapping[str, float]) -> List[str]:
    """``case/<case>/Dice.<class>`` keys as one row per case, one column per class."""
    rows: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        if key.startswith(CASE_PREFIX):
            case, metric = key[len(CASE_PREFIX):].rsplit('/', 1)
            rows.setdefault(case, {})[metric.split('.', 1)[1]] = value
    if not rows:
        return []
    columns = list(dict.fromkeys(name for row in rows.values() for name in row))
    width = max(len(case) for case in rows) + 2
    lines = ['case'.ljust(width) + ''.join(column.rjust(max(12, len(column) + 2))
                                          for column in columns)]
    for case, row in rows.items():
        lines.append(case.ljust(width) + ''.join(
            _format(row.get(column, float('nan'))).rjust(max(12, len(column) + 2))
            for column in columns))
    return ['per-case Dice (3-D):'] + lines + ['']


def metrics_table(metrics: Mapping[str, float]) -> str:
    """Two-column text table: summary keys first, then ``<metric>.<class>`` keys grouped by class.

    ``Dice.nucleus`` and ``IoU.nucleus`` become one row ``nucleus`` with a column each. Per-case
    keys of volume metrics (``case/<case>/Dice.<class>``) come first, as a table of their own.
    """
    lines = _per_case_table(metrics)
    metrics = {key: value for key, value in metrics.items() if not key.startswith(CASE_PREFIX)}
    summary = {key: value for key, value in metrics.items() if '.' not in key}
    per_class: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        if '.' in key:
            metric, name = key.split('.', 1)
            per_class.setdefault(name, {})[metric] = value
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
