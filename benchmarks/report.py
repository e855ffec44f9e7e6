"""What a speed benchmark reports: one row per candidate, ratios to a baseline, the machine, and
the ``OUT.json`` / ``OUT.md`` / ``OUT.png`` files that docs/benchmarks.md quotes."""
from __future__ import annotations

import json
import os
import platform
import statistics
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch

if TYPE_CHECKING:
    from .speed import BenchSettings

__all__ = ['summarize', 'measured', 'add_ratios', 'add_hardware_share', 'add_bandwidth_share',
           'elementwise_breakdown', 'format_markdown', 'plot_scatter', 'describe_machine',
           'settings_header', 'write_results']


def summarize(name: str, results: List[Dict[str, Any]], settings: 'BenchSettings') -> Dict[str, Any]:
    """Median step time over all rounds, the spread of round medians, and the memory figures."""
    times = [t for result in results for t in result['times']]
    round_medians = [statistics.median(result['times']) for result in results]
    median = statistics.median(times)
    peaks = [result['peak_bytes'] for result in results]
    row = dict(name=name, params=results[0]['params'], gmacs=results[0]['gmacs'],
               step_ms=round(median * 1e3, 1),
               spread_ms=round((max(round_medians) - min(round_medians)) * 1e3, 1),
               images_per_s=round(settings.batch / median, 2),
               peak_mib=round(statistics.median(peaks) / 2**20, 1))
    if results[0].get('saved_bytes'):
        row['saved_mib'] = round(results[0]['saved_bytes'] / 2**20, 1)
    bases = [result['base_rss_bytes'] for result in results if result.get('base_rss_bytes')]
    if bases:  # CPU: the part of the peak that the steps added on top of model and input
        row['step_mib'] = round(statistics.median(p - b for p, b in zip(peaks, bases)) / 2**20, 1)
    profiles = [result['elementwise'] for result in results if result.get('elementwise')]
    errors = [result['elementwise_error'] for result in results if 'elementwise_error' in result]
    if errors and not profiles:  # --bandwidth asked, the profile failed: say why in the table
        row['ew_error'] = errors[0]
    if profiles:  # --bandwidth: the element-wise operators' time and least traffic per step
        ew_ms = statistics.median(profile['ms'] for profile in profiles)
        profiled_ms = statistics.median(profile['step_ms'] for profile in profiles)
        row['ew_ms'] = round(ew_ms, 1)
        row['prof_step_ms'] = round(profiled_ms, 1)  # the profiled steps' own wall time
        row['ew_of_step'] = round(ew_ms / profiled_ms, 3)
        row['ew_gb_s'] = round(statistics.median(
            profile['bytes'] / profile['ms'] / 1e6 for profile in profiles if profile['ms']), 2)
    return row


def measured(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The rows of candidates that were measured (not the ``failed`` ones)."""
    return [row for row in rows if 'step_ms' in row]


def add_ratios(rows: List[Dict[str, Any]], baseline: str) -> List[Dict[str, Any]]:
    """Add time and memory ratios against the row named ``baseline`` (against the first
    measured row, said in a ``baseline`` entry, when the baseline's own measurement failed)."""
    base = next((row for row in rows if row['name'] == baseline), None)
    if base is None:
        raise ValueError(f'baseline {baseline!r} is not among the candidates {[r["name"] for r in rows]}')
    if 'step_ms' not in base and measured(rows):
        base = measured(rows)[0]
        for row in measured(rows):
            row['baseline'] = base['name']
    for row in measured(rows):
        row['time_x'] = round(row['step_ms'] / base['step_ms'], 3)
        row['peak_x'] = round(row['peak_mib'] / base['peak_mib'], 3)
        if 'step_mib' in row and base.get('step_mib'):
            row['step_mem_x'] = round(row['step_mib'] / base['step_mib'], 3)
        if 'saved_mib' in row and base.get('saved_mib'):
            row['saved_x'] = round(row['saved_mib'] / base['saved_mib'], 3)
    return rows


def add_hardware_share(rows: List[Dict[str, Any]], peak_gflops: float,
                       settings: 'BenchSettings') -> List[Dict[str, Any]]:
    """Add ``gflop_s`` (achieved: 2 FLOPs per MAC, a training step counted as three forward
    passes, forward + the two backward products) and ``of_peak`` (its share of the machine's
    matmul peak) to each row."""
    passes = 3 if settings.mode == 'train' else 1
    for row in measured(rows):
        flops = 2 * row['gmacs'] * 1e9 * settings.batch * passes
        row['gflop_s'] = round(flops / (row['step_ms'] / 1e3) / 1e9, 1)
        row['of_peak'] = round(row['gflop_s'] / peak_gflops, 3)
    return rows


def add_bandwidth_share(rows: List[Dict[str, Any]], peak_gb_s: float) -> List[Dict[str, Any]]:
    """Add ``ew_of_bw``: each row's element-wise effective bandwidth (``ew_gb_s``) as a share of
    the machine's copy bandwidth ``peak_gb_s``."""
    for row in rows:
        if 'ew_gb_s' in row:
            row['ew_of_bw'] = round(row['ew_gb_s'] / peak_gb_s, 3)
    return rows


def elementwise_breakdown(results: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One row per candidate and element-wise operator (the first round's profile, top
    operators by time): where the element-wise time goes."""
    rows = []
    for name, runs in results.items():
        profile = runs[0].get('elementwise') if runs else None
        for op in (profile or {}).get('ops', []):
            rows.append(dict(candidate=name, operator=op['name'], calls=op['calls'],
                             ms=op['ms'], gb_s=op['gb_s']))
    return rows


def format_markdown(rows: List[Dict[str, Any]]) -> str:
    """The result rows as a markdown table."""
    from effnet_backbones.profile import markdown_table
    return markdown_table(rows)


def plot_scatter(rows: List[Dict[str, Any]], path: str, title: str = '') -> None:
    """PNG scatter of throughput (images/s) against memory, one labelled point per model."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = measured(rows)
    memory_key = 'step_mib' if all('step_mib' in row for row in rows) else 'peak_mib'
    fig, ax = plt.subplots(figsize=(7, 5))
    for index, row in enumerate(rows):
        ax.scatter(row[memory_key], row['images_per_s'])
        # staggered labels stay readable when models share a point (same ops, same memory)
        ax.annotate(row['name'], (row[memory_key], row['images_per_s']), fontsize=8,
                    xytext=(5, 4 - 11 * (index % 3)), textcoords='offset points')
    ax.set_xlabel('training memory added by the steps (MiB, peak RSS - RSS before)'
                  if memory_key == 'step_mib' else 'peak memory (MiB)')
    ax.set_ylabel('images / s')
    ax.set_title(textwrap.fill(title, 80), fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def describe_machine(threads: Optional[int] = None) -> str:
    """The device the candidates ran on, in words."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    # the model and the kernels' instruction set: VMs of one name differ in both, and so do
    # their speeds and float rounding (a run reproduces bit for bit only on the same kind)
    capability = getattr(torch.backends.cpu, 'get_cpu_capability', lambda: '')()
    kernels = f', {capability} kernels' if capability else ''
    return (f'{_cpu_model() or platform.processor() or platform.machine()} CPU, {cores} cores'
            f'{kernels}, {threads or torch.get_num_threads()} torch threads')


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('' where there is none)."""
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return ''


def settings_header(settings: 'BenchSettings', rounds: int,
                    peak_gflops: Optional[float] = None,
                    peak_gb_s: Optional[float] = None) -> str:
    """One line saying what was measured, where and how often (the table's caption)."""
    size = settings.resolution
    peak = (f', matmul peak {peak_gflops:.1f} GFLOP/s ({settings.dtype}, same threads)'
            if peak_gflops else '')
    if peak_gb_s:
        peak += f', copy bandwidth {peak_gb_s:.1f} GB/s (read + write, same threads)'
    return (f'{settings.mode}, batch {settings.batch}, {size}x{size}, {settings.dtype}, '
            f'channels_last={settings.channels_last}, compile={settings.compile}, '
            f'device {describe_machine(settings.threads)}, torch {torch.__version__}, '
            f'{rounds} rounds x {settings.steps} steps{peak}')


def write_results(out: str, rows: List[Dict[str, Any]], settings: 'BenchSettings', header: str,
                  command: str, breakdown: Optional[List[Dict[str, Any]]] = None) -> None:
    """Write ``OUT.json`` (settings, machine, command, rows, and the element-wise ``breakdown``
    if any), ``OUT.md`` (header and tables) and ``OUT.png`` (:func:`plot_scatter`)."""
    stem = Path(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    record = dict(settings=asdict(settings), machine=describe_machine(settings.threads),
                  command=command, rows=rows)
    text = header + '\n\n' + format_markdown(rows) + '\n'
    if breakdown:
        record['elementwise_breakdown'] = breakdown
        text += ('\nElement-wise operators by time (per step, two profiled steps; least '
                 'traffic):\n\n' + format_markdown(breakdown) + '\n')
    stem.with_suffix('.json').write_text(json.dumps(record, indent=2))
    stem.with_suffix('.md').write_text(text)
    plot_scatter(rows, str(stem.with_suffix('.png')), title=header[:90])
