"""Growth that pays? Progressive B0 -> B2 -> B4 training against B4 from scratch.

One recipe (configs/grow/unet_progressive_b0_b4.py: the medical U-Net recipe plus phases), one
dataset, one seed list. The candidates:

- ``<final>-scratch``: the final variant trained from random init at the final crop for N
  iterations (the reference);
- ``progressive-<mode>-equal-iters``: the phases, their iterations in the given shares of the
  same N (so it spends fewer FLOPs);
- ``progressive-<mode>-equal-flops``: the same shares of M iterations, M chosen so that the run's
  training FLOPs equal the reference's.

Per-iteration training FLOPs of each phase are counted before training on the built models
(forward MACs at the phase's crop and batch x 2 x 3, :mod:`tasks.engine.flops`); every run also
counts them while training (``train_flops`` of each evaluation). The summary adds to the task
benchmark's columns the FLOPs of each run, its share of the reference's, and the share of the
reference's FLOPs at which it first reached the reference's final metric.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .training_runs import (REPO_ROOT, RunSettings, Variant, final_metrics, run_series,
                            summarize_runs, write_series_results)

__all__ = ['RECIPE', 'SCHEDULES', 'GrowthPhase', 'parse_phase', 'phase_training_flops',
           'growth_variants', 'summarize_growth', 'new_channel_use', 'run_growth_benchmark']

RECIPE = REPO_ROOT / 'configs' / 'grow' / 'unet_progressive_b0_b4.py'
SCHEDULES = ('equal-iters', 'equal-flops')


@dataclass(frozen=True)
class GrowthPhase:
    """A phase of the progressive candidates: variant, square crop, share of the iterations."""

    arch: str
    crop: int
    share: float


def parse_phase(text: str) -> GrowthPhase:
    """``'b0:96:0.5'`` -> GrowthPhase('b0', 96, 0.5)."""
    try:
        arch, crop, share = text.split(':')
        phase = GrowthPhase(arch, int(crop), float(share))
    except ValueError:
        raise ValueError(f"a phase is ARCH:CROP:SHARE, e.g. 'b0:96:0.5', got {text!r}") from None
    if phase.crop < 32 or phase.crop % 32 or not 0 < phase.share <= 1:
        raise ValueError(f'{text!r}: the crop must be a multiple of 32 (the U-Net pads to it) and '
                         f'the share in (0, 1]')
    return phase


def _model_config(config: str, data_root: str, arch: str) -> Dict[str, Any]:
    """The recipe's model at ``arch``, with the classes and channels of the data."""
    from tasks.engine.config import load_config, set_data_root
    from tasks.engine.data import resolve_from_data
    from tasks.engine.transplant import model_config_for
    cfg = load_config(config)
    set_data_root(cfg, data_root)
    resolve_from_data(cfg)
    return model_config_for(cfg.model.to_dict(), arch)


def phase_training_flops(config: str, data_root: str, phases: Sequence[GrowthPhase],
                         batch_size: int) -> List[float]:
    """Training FLOPs of one iteration of each phase (forward MACs x 2 x 3, batch included)."""
    import torch

    import tasks.segmentation  # noqa: F401  (registers the model)
    from effnet_backbones.profile import count_macs
    from effnet_backbones.registry import MODELS
    from tasks.engine.flops import FLOPS_PER_MAC
    flops = []
    for phase in phases:
        model_cfg = _model_config(config, data_root, phase.arch)
        with torch.random.fork_rng(devices=[]):
            model = MODELS.build(model_cfg)
        size = (1, model_cfg['in_channels'], phase.crop, phase.crop)
        flops.append(float(count_macs(model, size) * batch_size * FLOPS_PER_MAC))
    return flops


def _progressive(mode: str, phases: Sequence[GrowthPhase], rewarm: int) -> Dict[str, Any]:
    """The ``progressive`` override; iterations are per-mille shares (the run scales them)."""
    return dict(progressive=dict(mode=mode, rewarm=dict(iters=rewarm, start_factor=0.1), phases=[
        dict(arch=phase.arch, iters=max(1, round(phase.share * 1000)), crop_size=phase.crop)
        for phase in phases]))


def growth_variants(phases: Sequence[GrowthPhase], modes: Sequence[str], schedules: Sequence[str],
                    rewarm: int) -> Dict[str, List[Variant]]:
    """schedule -> its variants; the reference (final variant from scratch) is in 'equal-iters'."""
    final = phases[-1]
    scratch = Variant(f'{final.arch}-scratch', dict(
        progressive=None, model=dict(arch=final.arch),
        train_dataloader=dict(dataset=dict(crop_size=final.crop))))
    series: Dict[str, List[Variant]] = {'equal-iters': [scratch]}
    for schedule in schedules:
        if schedule not in SCHEDULES:
            raise ValueError(f'unknown schedule {schedule!r}; known: {", ".join(SCHEDULES)}')
        series.setdefault(schedule, []).extend(
            Variant(f'progressive-{mode}-{schedule}', _progressive(mode, phases, rewarm))
            for mode in modes)
    return series


def _total_flops(result: Mapping[str, Any]) -> Optional[float]:
    evaluations = result.get('evaluations') or []
    return evaluations[-1].get('train_flops') if evaluations else None


def _flops_to_reach(result: Mapping[str, Any], metric: str, target: float) -> Optional[float]:
    for evaluation in result.get('evaluations') or []:
        if evaluation['metrics'].get(metric, float('-inf')) >= target:
            return evaluation.get('train_flops')
    return None


def summarize_growth(results: Sequence[Mapping[str, Any]], metric: str, reference: str,
                     per_class_prefix: Optional[str] = 'Dice.') -> List[Dict[str, Any]]:
    """The task benchmark's rows (metric over seeds, per class, seconds, memory, parameters,
    iterations and seconds to the reference's final) plus training TFLOPs, their share of the
    reference's, and the share of the reference's FLOPs spent when the reference's final metric
    was first reached (mean over seeds; 'not reached' unless every seed reached it)."""
    rows = summarize_runs(results, metric, per_class_prefix, reference)
    ok = [r for r in results if r['status'] == 0]
    reference_runs = [r for r in ok if r['name'] == reference]
    if not reference_runs:
        return rows
    target = statistics.mean(final_metrics(r)[metric] for r in reference_runs)
    reference_flops = statistics.mean(_total_flops(r) or 0.0 for r in reference_runs)
    for row in rows:
        runs = [r for r in ok if r['name'] == row['name']]
        totals = [_total_flops(r) for r in runs]
        if not runs or None in totals or not reference_flops:
            continue
        row['iters'] = runs[0]['evaluations'][-1]['iter']
        row['train_tflops'] = round(statistics.mean(totals) / 1e12, 2)
        row['flops_vs_ref'] = round(statistics.mean(totals) / reference_flops, 3)
        reached = [_flops_to_reach(r, metric, target) for r in runs]
        row['reach_ref_flops'] = (round(statistics.mean(reached) / reference_flops, 3)
                                  if all(value is not None for value in reached) else 'not reached')
    return rows


def _part(name: str) -> str:
    """'net.encoder.backbone.stages.3.1.expand.conv.weight' -> 'stages.3'; 'net.decoder...' ->
    'decoder'."""
    parts = name.split('.')
    for index, part in enumerate(parts):
        if part == 'stages':
            return '.'.join(parts[index:index + 2])
        if part in ('stem', 'taps', 'decoder', 'segmentation_head'):
            return part
    return parts[0]


def new_channel_use(final_state: Mapping[str, Any], first_state: Mapping[str, Any]
                    ) -> Dict[str, float]:
    """How much the channels the first phase's model had read from the channels growth added.

    For every dense convolution of the final model whose tensor existed in the first phase
    (same name, fewer channels), the share of the squared weights into the old output channels
    that comes from new input channels: ``sum W[old_out, new_in]^2 / sum W[old_out, :]^2``,
    summed per part (stem, each stage, taps). An exact-mode growth starts these weights at zero,
    so the share says how far the old channels have come to use the new ones (net2wider starts
    them as the copies' shares of the old weights). The decoder is left out: its inputs are
    concatenations whose old channels are not a leading slice, and its own width does not grow.
    """
    sums: Dict[str, List[float]] = {}
    for name, final in final_state.items():
        first = first_state.get(name)
        if first is None or final.dim() != 4 or final.shape[1] == 1 or first.shape == final.shape \
                or _part(name) in ('decoder', 'segmentation_head'):
            continue
        old_out, old_in = first.shape[:2]
        if old_in >= final.shape[1]:
            continue
        rows = final[:old_out].double()
        totals = sums.setdefault(_part(name), [0.0, 0.0])
        totals[0] += float(rows[:, old_in:].pow(2).sum())
        totals[1] += float(rows.pow(2).sum())
    return {part: round(new / whole, 4) for part, (new, whole) in sums.items() if whole}


def run_growth_benchmark(settings: RunSettings, phases: Sequence[GrowthPhase],
                         modes: Sequence[str], schedules: Sequence[str], batch_size: int,
                         rewarm: int, out: Path, header: str = '', log=print) -> List[Dict[str, Any]]:
    """Train the reference and every progressive candidate with every seed; write ``OUT.json``,
    ``OUT.md`` and ``OUT.png`` (metric against iterations, seconds and training FLOPs)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs_dir = out.parent / f'{out.name}_runs'
    per_phase = phase_training_flops(settings.config, settings.data_root, phases, batch_size)
    final_only = per_phase[-1]
    mixed = sum(phase.share * flops for phase, flops in zip(phases, per_phase)) / \
        sum(phase.share for phase in phases)
    lengths = {'equal-iters': settings.max_iters,
               'equal-flops': max(len(phases), round(settings.max_iters * final_only / mixed))}
    log('training GFLOPs per iteration: ' + ', '.join(
        f'{phase.arch}@{phase.crop}: {flops / 1e9:.2f}' for phase, flops in zip(phases, per_phase))
        + f'; progressive mean {mixed / 1e9:.2f}; equal-flops runs: {lengths["equal-flops"]} '
        f'iterations against {settings.max_iters}')
    results: List[Dict[str, Any]] = []
    for schedule, variants in growth_variants(phases, modes, schedules, rewarm).items():
        series = replace(settings, max_iters=lengths[schedule])
        results += run_series(variants, series, runs_dir, log=log)
    reference = f'{phases[-1].arch}-scratch'
    rows = summarize_growth(results, settings.metric, reference)
    use = _new_channel_use_of_runs(settings, phases[0].arch, results, runs_dir)
    for key, shares in use.items():
        log(f'{key}: share of the old channels\' weights on new channels: {shares}')
    write_series_results(out, header, settings, rows, results, reference=reference,
                         phases=[vars(phase) for phase in phases], modes=list(modes),
                         schedules=lengths, phase_train_gflops=[round(f / 1e9, 3) for f in per_phase],
                         new_channel_use=use)
    return rows


def _new_channel_use_of_runs(settings: RunSettings, first_arch: str,
                             results: Sequence[Mapping[str, Any]], runs_dir: Path
                             ) -> Dict[str, Dict[str, float]]:
    """'<run>/seed<N>' -> :func:`new_channel_use` of its final checkpoint, for each progressive
    run that kept one."""
    import torch

    import tasks.segmentation  # noqa: F401  (registers the model)
    from effnet_backbones.registry import MODELS
    from tasks.engine import load_from_local
    with torch.random.fork_rng(devices=[]):
        first = MODELS.build(_model_config(settings.config, settings.data_root, first_arch))
    first_state = first.state_dict()
    use = {}
    for result in results:
        if result['status'] != 0 or not result['name'].startswith('progressive-'):
            continue
        last = result['evaluations'][-1]['iter']
        path = runs_dir / result['name'] / f"seed{result['seed']}" / 'work' / f'iter_{last}.pth'
        if path.is_file():
            state = load_from_local(str(path), map_location='cpu')['state_dict']
            use[f"{result['name']}/seed{result['seed']}"] = new_channel_use(state, first_state)
    return use
