"""What sliding windows, test-time augmentation and largest-component post-processing buy, and
what they cost: one trained checkpoint evaluated with every combination of the three.

Each variant is ``tools/test.py CONFIG CKPT [--sliding-window] [--tta] [--largest-component]``
(the same config changes, :func:`tasks.engine.apply_inference_options`), run in this process
one after another on the same data; the seconds are those of the test loop (data, prediction,
metric), without building the model. Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from effnet_backbones.profile import markdown_table

__all__ = ['Variant', 'VARIANTS', 'run_variant', 'run_inference_benchmark']

#: (sliding window, TTA, largest component): every combination, plain first
VARIANTS = tuple(itertools.product((False, True), repeat=3))


def variant_name(sliding_window: bool, tta: bool, largest_component: bool) -> str:
    """'whole', 'slide + tta + lcc' ..."""
    parts = ['slide' if sliding_window else 'whole'] + (['tta'] if tta else []) + \
        (['lcc'] if largest_component else [])
    return ' + '.join(parts)


Variant = Dict[str, Any]


def run_variant(config: str, checkpoint: str, data_root: Optional[str], work_dir: Path,
                sliding_window: bool, tta: bool, largest_component: bool,
                overlap: float = 0.5, cfg_options: Optional[Dict[str, Any]] = None) -> Variant:
    """Evaluate one combination; returns its metrics and seconds."""
    from tasks.engine import apply_inference_options, build_runner, prepare_test_config

    cfg = prepare_test_config(config, checkpoint, work_dir=str(work_dir), data_root=data_root,
                              cfg_options=cfg_options)
    apply_inference_options(cfg, tta=tta, sliding_window=sliding_window,
                            overlap=overlap if sliding_window else None,
                            largest_component=largest_component)
    if not sliding_window and cfg.get('task', 'segmentation') == 'segmentation':
        # the 'whole' rows predict whole slices even where the config validates in windows
        cfg.model.test_cfg = {**(cfg.model.get('test_cfg') or {}), 'mode': 'whole'}
    runner = build_runner(cfg)
    start = time.perf_counter()
    metrics = dict(runner.test())
    seconds = time.perf_counter() - start
    slices = len(runner.test_dataloader.dataset)
    return dict(variant=variant_name(sliding_window, tta, largest_component),
                sliding_window=sliding_window, tta=tta, largest_component=largest_component,
                seconds=round(seconds, 2), seconds_per_slice=round(seconds / max(slices, 1), 4),
                slices=slices, metrics={key: value for key, value in metrics.items()
                                        if not key.startswith('case/')},
                per_case={key: value for key, value in metrics.items() if key.startswith('case/')})


def summary_rows(variants: Sequence[Variant], classes: Sequence[str]) -> List[Dict[str, Any]]:
    """One table row per variant: mean foreground Dice, per-class Dice, seconds, their ratios."""
    base = variants[0]
    rows = []
    for variant in variants:
        metrics = variant['metrics']
        row = {'variant': variant['variant'], 'mFgDice': round(metrics['mFgDice'], 4)}
        row.update({f'Dice {name}': round(metrics[f'Dice.{name}'], 4) for name in classes[1:]})
        row.update({'vs whole': f"{metrics['mFgDice'] - base['metrics']['mFgDice']:+.4f}",
                    'seconds': variant['seconds'],
                    's / slice': variant['seconds_per_slice'],
                    'time x': round(variant['seconds'] / base['seconds'], 2)})
        rows.append(row)
    return rows


def run_inference_benchmark(config: str, checkpoint: str, out: Path,
                            data_root: Optional[str] = None, overlap: float = 0.5,
                            variants: Sequence[Sequence[bool]] = VARIANTS,
                            cfg_options: Optional[Dict[str, Any]] = None,
                            header: str = '', work_dir: Optional[Path] = None) -> List[Variant]:
    """Evaluate ``checkpoint`` with each variant; write ``out``.json and ``out``.md (the test
    logs go to ``work_dir``, default ``work_dirs/benchmark_inference/<out name>``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = Path(work_dir or Path('work_dirs') / 'benchmark_inference' / out.name)
    results = []
    for sliding_window, tta, largest_component in variants:
        variant_dir = logs / variant_name(
            sliding_window, tta, largest_component).replace(' + ', '_')
        results.append(run_variant(config, checkpoint, data_root, variant_dir, sliding_window, tta,
                                   largest_component, overlap, cfg_options))
    classes = [key.split('.', 1)[1] for key in results[0]['metrics'] if key.startswith('Dice.')]
    table = markdown_table(summary_rows(results, classes))
    out.with_suffix('.json').write_text(json.dumps(dict(config=config, checkpoint=checkpoint,
                                                        data_root=data_root, overlap=overlap,
                                                        variants=results), indent=1))
    out.with_suffix('.md').write_text((header + '\n\n' if header else '') + table + '\n')
    return results
