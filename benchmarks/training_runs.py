"""Train one recipe under several variants, one fresh process per (variant, seed), and collect what
each run measured: the shared engine of ``tools/benchmark_task.py`` and ``tools/ablate.py``.

Each variant is the recipe plus overrides, written as a derived config (``_base_`` = the recipe)
into the run's folder, so what ran is on disk next to its result, and trained with
``tools/train.py`` exactly as a user would. A run whose ``result.json`` exists is not run again:
an interrupted series resumes where it stopped.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ['Variant', 'RunSettings', 'derived_config_text', 'nest_dotted', 'run_variant',
           'run_series', 'final_metrics', 'summarize_runs', 'reach_time', 'plot_runs',
           'write_markdown', 'write_series_results', 'REPO_ROOT']

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_TOOL = REPO_ROOT / 'tools' / 'train.py'
PEER_MODULE = 'benchmarks.peers'


@dataclass(frozen=True)
class Variant:
    """One configuration to train: a name and overrides of the recipe.

    Args:
        name: label in tables and plots (also the run folder's name).
        overrides: nested dicts merged into the recipe as ``_base_`` inheritance does (use
            ``_delete_=True`` inside a dict to replace it whole).
    """

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSettings:
    """What is the same for every variant of one series.

    Args:
        config: the recipe (a config file under configs/).
        data_root: the dataset folder (``--data-root``).
        max_iters: training length (``--max-iters``: the recipe's schedule is stretched to it).
        val_interval: iterations between validations (the curve's resolution).
        seeds: one run per seed.
        metric: the validation metric compared, e.g. 'mFgDice' or 'coco/bbox_mAP'.
        cfg_options: extra dotted overrides for every variant (``--cfg-options``).
        timeout_s: a run taking longer is stopped and reported as failed.
    """

    config: str
    data_root: str
    max_iters: int
    val_interval: int
    seeds: Sequence[int] = (0,)
    metric: str = 'mFgDice'
    cfg_options: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 3600.0


def nest_dotted(options: Mapping[str, Any]) -> Dict[str, Any]:
    """``{'model.arch': 'b4'}`` -> ``{'model': {'arch': 'b4'}}`` (dicts merge, keys in order)."""
    nested: Dict[str, Any] = {}
    for dotted, value in options.items():
        keys = dotted.split('.')
        node = nested
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f'{dotted!r} sets a key inside {key!r}, which is already a value')
        node[keys[-1]] = value
    return nested


def _custom_imports(config: str) -> List[str]:
    from mmengine.config import Config
    base = Config.fromfile(config).get('custom_imports', {}) or {}
    return list(base.get('imports', []))


def derived_config_text(config: str, overrides: Mapping[str, Any]) -> str:
    """A config file that inherits ``config`` and applies ``overrides`` (peers importable)."""
    imports = _custom_imports(config)
    if PEER_MODULE not in imports:
        imports.append(PEER_MODULE)
    lines = [f'# written by benchmarks/training_runs.py: {Path(config).name} + the overrides below',
             f'_base_ = [{str(Path(config).resolve())!r}]',
             f'custom_imports = dict(imports={imports!r}, allow_failed_imports=False)']
    lines += [f'{key} = {value!r}' for key, value in overrides.items()]
    return '\n'.join(lines) + '\n'


def _option_text(value: Any) -> str:
    # mmengine's DictAction reads None/True/False and numbers; tuples are spelled with brackets
    return str(value).replace(' ', '')


def run_variant(variant: Variant, settings: RunSettings, seed: int, out_dir: Path) -> Dict[str, Any]:
    """Train ``variant`` with ``seed`` in ``out_dir/<name>/seed<seed>``; returns its result.

    The result holds the run's training curves (every validation's metrics with the training
    seconds until then), parameters, peak memory, the command and the exit status.
    """
    run_dir = out_dir / variant.name / f'seed{seed}'
    result_file = run_dir / 'result.json'
    if result_file.is_file():
        # the variant's current name labels it (the folder may have been renamed to it)
        return dict(json.loads(result_file.read_text()), name=variant.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / 'config.py'
    config.write_text(derived_config_text(settings.config, variant.overrides))
    options = {'randomness.seed': seed, 'train_cfg.val_interval': settings.val_interval,
               'default_hooks.checkpoint.interval': settings.max_iters,
               'default_hooks.checkpoint.save_best': None,
               'experiment_name': f'{variant.name}-seed{seed}', **settings.cfg_options}
    command = [sys.executable, str(TRAIN_TOOL), str(config), '--work-dir', str(run_dir / 'work'),
               '--data-root', str(settings.data_root), '--max-iters', str(settings.max_iters),
               '--cfg-options', *[f'{key}={_option_text(value)}' for key, value in options.items()]]
    started = time.perf_counter()
    with open(run_dir / 'train.log', 'w') as log:
        try:
            status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                    env=dict(os.environ), timeout=settings.timeout_s).returncode
        except subprocess.TimeoutExpired:
            status = 'timeout'
    result: Dict[str, Any] = dict(name=variant.name, seed=seed, status=status,
                                  wall_seconds=round(time.perf_counter() - started, 1),
                                  command=' '.join(command[1:]), overrides=dict(variant.overrides))
    curves = run_dir / 'work' / 'training_curves.json'
    if status == 0 and curves.is_file():
        result.update(json.loads(curves.read_text()))
        # a failed run leaves no result.json, so the next series tries it again
        result_file.write_text(json.dumps(result, indent=1))
    else:
        tail = (run_dir / 'train.log').read_text().splitlines()[-15:]
        result['error'] = '\n'.join(tail)
    return result


def run_series(variants: Sequence[Variant], settings: RunSettings, out_dir: Path,
               log=print) -> List[Dict[str, Any]]:
    """Every variant with every seed, in series (one heavy job at a time on a small machine)."""
    results = []
    for variant in variants:
        for seed in settings.seeds:
            log(f'[{variant.name} seed {seed}] training ...')
            result = run_variant(variant, settings, seed, out_dir)
            status = 'ok' if result['status'] == 0 else f"FAILED ({result['status']})"
            final = final_metrics(result).get(settings.metric)
            log(f'[{variant.name} seed {seed}] {status}, {settings.metric}={final}, '
                f"{result.get('training_seconds')} s training")
            results.append(result)
    return results


def final_metrics(result: Mapping[str, Any]) -> Dict[str, float]:
    """The metrics of a run's last validation (taken at its last iteration), or {} if it failed."""
    evaluations = result.get('evaluations') or []
    return dict(evaluations[-1]['metrics']) if evaluations else {}


def reach_time(result: Mapping[str, Any], metric: str, target: float) -> Optional[Dict[str, float]]:
    """The first validation at which ``metric`` reached ``target``: its iteration and seconds."""
    for evaluation in result.get('evaluations') or []:
        value = evaluation['metrics'].get(metric)
        if value is not None and value >= target:
            return dict(iter=evaluation['iter'], seconds=evaluation['seconds'])
    return None


def _spread(values: List[float]) -> str:
    if not values:
        return 'n/a'
    if len(values) == 1:
        return f'{values[0]:.3f}'
    return f'{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})'


def summarize_runs(results: Sequence[Mapping[str, Any]], metric: str,
                   per_class_prefix: Optional[str] = None,
                   reference: Optional[str] = None) -> List[Dict[str, Any]]:
    """One row per variant: metric mean (min-max over seeds), per-class values, training
    seconds (and, where the runs had a PreciseBN hook, the part of them it took), peak memory
    (the process's, and the rise training added above its start), parameters, and (with
    ``reference``) the seconds and iterations to reach the reference
    variant's mean final metric."""
    names = list(dict.fromkeys(result['name'] for result in results))
    by_name = {name: [r for r in results if r['name'] == name and r['status'] == 0] for name in names}
    target = None
    if reference is not None and by_name.get(reference):
        target = statistics.mean(final_metrics(r)[metric] for r in by_name[reference])
    with_precise_bn = any('precise_bn_seconds' in e for r in results
                          for e in r.get('evaluations') or [])
    rows = []
    for name in names:
        runs = by_name[name]
        finals = [final_metrics(r) for r in runs]
        row: Dict[str, Any] = dict(name=name, seeds=len(runs),
                                   failed=sum(1 for r in results if r['name'] == name) - len(runs))
        row[metric] = _spread([f[metric] for f in finals if metric in f])
        row[f'{metric}_mean'] = (round(statistics.mean(f[metric] for f in finals), 4)
                                 if finals else None)
        if per_class_prefix and finals:
            for key in sorted(k for k in finals[0] if k.startswith(per_class_prefix)):
                row[key] = round(statistics.mean(f[key] for f in finals if key in f), 3)
        row['train_s'] = (round(statistics.mean(r['training_seconds'] for r in runs), 1)
                          if runs else None)
        if with_precise_bn:  # part of train_s; apart, since it scales with validations
            spent = [r['evaluations'][-1].get('precise_bn_seconds') for r in runs
                     if r.get('evaluations')]
            row['precise_bn_s'] = (round(statistics.mean(spent), 1)
                                   if spent and None not in spent else None)
        row['peak_rss_mb'] = max((r.get('peak_rss_mb', 0) for r in runs), default=None)
        rises = [r['train_rss_rise_mb'] for r in runs if 'train_rss_rise_mb' in r]
        if rises:  # runs recorded before this figure existed have none
            row['train_rss_rise_mb'] = max(rises)
        before_val = [r['train_rss_rise_before_val_mb'] for r in runs
                      if 'train_rss_rise_before_val_mb' in r]
        if before_val:  # training iterations only, up to the first validation
            row['train_rss_rise_before_val_mb'] = max(before_val)
        row['params'] = runs[0].get('parameters') if runs else None
        if target is not None:
            reached = [reach_time(r, metric, target) for r in runs]
            hits = [hit for hit in reached if hit]
            row['reach_ref_s'] = (round(statistics.mean(h['seconds'] for h in hits), 1)
                                  if len(hits) == len(runs) and hits else 'not reached')
            row['reach_ref_iter'] = (round(statistics.mean(h['iter'] for h in hits))
                                     if len(hits) == len(runs) and hits else 'not reached')
        rows.append(row)
    return rows


def plot_runs(results: Sequence[Mapping[str, Any]], metric: str, path: Path, title: str = '') -> None:
    """Validation ``metric`` against iterations, training seconds and, when the runs counted
    them (``train_flops``), cumulative training FLOPs; one colour per variant, one line per seed."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ok = [r for r in results if r['status'] == 0]
    with_flops = bool(ok) and all('train_flops' in e for r in ok for e in r.get('evaluations', []))
    xs = [('iter', 'iteration', 1.0), ('seconds', 'training seconds (validation excluded)', 1.0)]
    if with_flops:
        xs.append(('train_flops', 'training PFLOPs (cumulative)', 1e15))
    fig, axes = plt.subplots(1, len(xs), figsize=(6.5 * len(xs), 4.8))
    names = list(dict.fromkeys(result['name'] for result in results))
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for index, name in enumerate(names):
        colour = colours[index % len(colours)]
        for number, result in enumerate(r for r in ok if r['name'] == name):
            points = [e for e in result.get('evaluations', []) if metric in e['metrics']]
            if not points:
                continue
            values = [e['metrics'][metric] for e in points]
            label = name if number == 0 else None
            for axis, (key, _, scale) in zip(axes, xs):
                axis.plot([e[key] / scale for e in points], values, color=colour, label=label,
                          linewidth=1.3, marker='.')
    for axis, (_, xlabel, _) in zip(axes, xs):
        axis.set_xlabel(xlabel)
        axis.set_ylabel(f'validation {metric}')
        axis.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc='lower right')
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(rows: Sequence[Mapping[str, Any]], header: str, path: Path) -> str:
    """``header`` and the rows as a markdown table, written to ``path``; returns the text."""
    from effnet_backbones.profile import markdown_table
    text = header.rstrip() + '\n\n' + markdown_table(list(rows)) + '\n'
    path.write_text(text)
    return text


def write_series_results(out: Path, header: str, settings: RunSettings,
                         rows: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]],
                         **extra: Any) -> str:
    """``OUT.json`` (header, settings, rows, every run without its loss trace, ``extra``),
    ``OUT.md`` (header and table) and ``OUT.png`` (:func:`plot_runs`); returns the markdown."""
    out = Path(out)
    out.with_suffix('.json').write_text(json.dumps(dict(
        **extra, settings=dict(vars(settings)), header=header, rows=list(rows),
        runs=[{key: value for key, value in result.items() if key != 'loss'}
              for result in results]), indent=1, default=str))
    text = write_markdown(rows, header, out.with_suffix('.md'))
    plot_runs(results, settings.metric, out.with_suffix('.png'),
              title=header.splitlines()[0] if header else '')
    return text
