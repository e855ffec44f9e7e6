"""Training hooks shared by the tasks: stop on a NaN loss, plot the training curves."""
from __future__ import annotations

import json
import math
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Sequence

from mmengine.dist import master_only
from mmengine.hooks import Hook

from effnet_backbones.allocator import current_rss_bytes, peak_rss_bytes, reset_peak_rss

from .flops import TRAIN_FLOPS_KEY
from .precise_bn import PRECISE_BN_SECONDS_KEY

__all__ = ['NonFiniteLossError', 'NanLossGuardHook', 'TrainingCurvesHook', 'plot_curves',
           'peak_memory_mb']


def _scalar(value: Any) -> float:
    """A logged value (tensor or number) as a float, without autograd warnings."""
    return float(value.detach()) if hasattr(value, 'detach') else float(value)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def _batch_files(data_batch: Any, limit: int = 4) -> List[str]:
    """Image paths of a batch, when its samples carry them (for the error message)."""
    samples = data_batch.get('data_samples', []) if isinstance(data_batch, dict) else []
    paths = [getattr(sample, 'img_path', None) or getattr(sample, 'metainfo', {}).get('img_path')
             for sample in samples]
    return [str(path) for path in paths if path][:limit]


class NanLossGuardHook(Hook):
    """Stop training with an error naming the iteration when a loss is NaN or infinite.

    It runs before the checkpoint hook of the same iteration, so no checkpoint with diverged
    weights is written; the ones already on disk stay as they were.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[Dict[str, Any]] = None) -> None:
        for key, value in (outputs or {}).items():
            if 'loss' in key and not math.isfinite(_scalar(value)):
                files = _batch_files(data_batch)
                raise NonFiniteLossError(
                    f'{key} is {_scalar(value)} at iteration {runner.iter + 1}; training stopped '
                    f'(checkpoints already in {runner.work_dir} are untouched). Batch: '
                    f'{files or "n/a"}. Lower the learning rate, clip gradients '
                    f'(optim_wrapper.clip_grad=dict(max_norm=1.0)) or check these files.')


def plot_curves(history: Dict[str, List[Any]], metric_key: str, path: str) -> None:
    """Write a PNG with the training loss (left) and the validation metric (right) per iteration.

    When the evaluations carry ``train_flops`` (a :class:`~tasks.engine.flops.TrainingFlopsHook`
    ran), the metric panel gets cumulative training FLOPs as a second x-axis on top.
    """
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    panels = ((left, 'loss', 'training loss'), (right, 'metric', f'val {metric_key}'))
    for axis, key, label in panels:
        points = history.get(key, [])
        if points:
            iters, values = zip(*points)
            axis.plot(iters, values, marker='o' if key == 'metric' else None, linewidth=1.2)
        axis.set_xlabel('iteration')
        axis.set_title(label)
        axis.grid(alpha=0.3)
    _flops_axis(right, history.get('evaluations', []))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _flops_axis(axis: Any, evaluations: Sequence[Dict[str, Any]]) -> None:
    """A top x-axis of cumulative training FLOPs, interpolated between the evaluations."""
    points = [(0, 0.0)] + [(e['iter'], e['train_flops']) for e in evaluations if 'train_flops' in e]
    if len(points) < 2:
        return
    import numpy as np
    iters, flops = (np.asarray(values, dtype=float) for values in zip(*points))
    scale = 1e12 if flops[-1] < 1e15 else 1e15
    flops = flops / scale
    # piecewise linear and increasing, so the map inverts; extrapolate with the last phase's rate
    rate = (flops[-1] - flops[-2]) / max(iters[-1] - iters[-2], 1)

    def to_flops(x):
        x = np.asarray(x, dtype=float)
        return np.where(x <= iters[-1], np.interp(x, iters, flops), flops[-1] + (x - iters[-1]) * rate)

    def to_iters(y):
        y = np.asarray(y, dtype=float)
        inside = np.interp(y, flops, iters)
        return np.where(y <= flops[-1], inside, iters[-1] + (y - flops[-1]) / max(rate, 1e-30))

    top = axis.secondary_xaxis('top', functions=(to_flops, to_iters))
    top.set_xlabel(f'training {"TFLOPs" if scale == 1e12 else "PFLOPs"} (cumulative)')


def peak_memory_mb() -> Dict[str, float]:
    """Peak memory of this process so far: resident set (MB) and, on CUDA, allocated tensors."""
    peak = {'peak_rss_mb': round(peak_rss_bytes() / 2 ** 20, 1)}
    import torch
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak['peak_cuda_mb'] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return peak


#: metrics a run without ``save_best`` plots, the first one its validation reports
PREFERRED_METRICS = ('mFgDice', 'mDice', 'coco/bbox_mAP')


def _preferred_metric(metrics: Dict[str, Any]) -> str:
    """The metric to plot when no checkpoint hook picks one: a headline metric, else the first."""
    return next((key for key in PREFERRED_METRICS if key in metrics), next(iter(metrics)))


def _iteration_of(point: Any) -> int:
    return point['iter'] if isinstance(point, dict) else point[0]


class TrainingCurvesHook(Hook):
    """Record the training loss and the validation metrics; plot them when training ends.

    Writes ``training_curves.png`` and ``training_curves.json`` to the work dir. The JSON also
    holds, for every validation, all metrics and the training seconds spent until then
    (wall-clock time less the time spent validating; with a :class:`PreciseBNHook` its
    recomputations count as training and are also given apart, ``precise_bn_seconds``), plus the
    model's parameter count and the process's peak memory: what a benchmark compares. The
    history travels in checkpoints, so a resumed run plots (and times) the whole run.

    Memory: ``peak_rss_mb`` is the process's peak resident set, libraries, model and data
    included; ``train_rss_rise_mb`` how far training (its loop, validations included) took the
    resident set above where it stood when training began (on Linux; the peak is reset there
    and the earlier one kept), the memory the training itself costs;
    ``train_rss_rise_before_val_mb`` the same rise up to the first validation, training
    iterations only (afterwards the allocator keeps part of validation's buffers, so later
    stretches cannot be told apart).

    Args:
        metric_key: validation metric to plot, e.g. 'mDice' or 'coco/bbox_mAP'; default: the one
            the checkpoint hook picks the best checkpoint by (``save_best``), else mFgDice,
            mDice or COCO mAP, whichever the validation reports first.
        filename: stem of the output files.
    """

    priority = 'LOW'
    META_KEY = 'training_curves'

    def __init__(self, metric_key: Optional[str] = None, filename: str = 'training_curves') -> None:
        self.metric_key = metric_key
        self.filename = filename
        self.history: Dict[str, List[Any]] = {'loss': [], 'metric': [], 'evaluations': []}
        self.parameters = 0
        self._picked: Optional[str] = None
        self._clock_start = self._val_start = 0.0
        self._val_seconds = self._seconds_before = 0.0
        self._peak_before_train = 0
        self._rss_at_train_start: Optional[int] = None
        self._rise_before_val: Optional[int] = None

    def training_seconds(self) -> float:
        """Seconds spent training so far in this run (and before a resume), validation excluded."""
        return self._seconds_before + time.perf_counter() - self._clock_start - self._val_seconds

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[Dict[str, Any]] = None) -> None:
        if outputs and 'loss' in outputs:
            self.history['loss'].append([runner.iter + 1, _scalar(outputs['loss'])])

    def before_val_epoch(self, runner) -> None:
        self._val_start = time.perf_counter()
        if self._clock_start and self._rss_at_train_start is not None \
                and self._rise_before_val is None:
            self._rise_before_val = max(0, peak_rss_bytes() - self._rss_at_train_start)

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if not metrics or not self._clock_start:  # a test or validation run, no training clock
            return
        if self.metric_key is None:
            self.metric_key = self._picked or _preferred_metric(metrics)
        seconds = self._seconds_before + self._val_start - self._clock_start - self._val_seconds
        self._val_seconds += time.perf_counter() - self._val_start
        if self.metric_key in metrics:
            self.history['metric'].append([runner.iter, float(metrics[self.metric_key])])
        evaluation = dict(iter=runner.iter, seconds=round(seconds, 2),
                          metrics={key: float(value) for key, value in metrics.items()
                                   if isinstance(value, (int, float))})
        flops = runner.message_hub.get_info(TRAIN_FLOPS_KEY)  # with a TrainingFlopsHook
        if flops is not None:
            evaluation['train_flops'] = float(flops)
        precise_bn = runner.message_hub.get_info(PRECISE_BN_SECONDS_KEY)  # with a PreciseBNHook
        if precise_bn is not None:  # counted in `seconds` too: it runs before validation starts
            evaluation['precise_bn_seconds'] = round(float(precise_bn), 2)
        self.history['evaluations'].append(evaluation)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[self.META_KEY] = dict(
            self.history, training_seconds=round(self.training_seconds(), 2))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get('meta', {}).get(self.META_KEY)
        if saved:
            self._seconds_before = float(saved.get('training_seconds', 0.0))
            self.history = {key: [dict(point) if isinstance(point, dict) else list(point)
                                  for point in saved.get(key, [])]
                            for key in ('loss', 'metric', 'evaluations')}

    def before_run(self, runner) -> None:
        if self.metric_key is None:
            picked = [key for hook in runner.hooks for key in getattr(hook, 'key_indicators', [])]
            self._picked = picked[0] if picked else None  # else: chosen at the first validation
        self.parameters = sum(p.numel() for p in runner.model.parameters())

    def before_train(self, runner) -> None:
        # a resumed run keeps the points up to where it resumes; a fresh one (even one that loaded
        # weights from another run's checkpoint) starts empty
        self.history = {key: [point for point in points if _iteration_of(point) <= runner.iter]
                        for key, points in self.history.items()}
        if runner.iter == 0:
            self._seconds_before = 0.0
        self._clock_start = time.perf_counter()
        self._val_seconds = 0.0
        self._peak_before_train = peak_rss_bytes()
        self._rss_at_train_start = current_rss_bytes() if reset_peak_rss() else None
        self._rise_before_val = None

    def _training_memory(self) -> Dict[str, float]:
        """The process's peak RSS over the whole run and the rise training added (MB)."""
        peak = peak_rss_bytes()
        memory = {'peak_rss_mb': round(max(peak, self._peak_before_train) / 2 ** 20, 1)}
        if self._rss_at_train_start is not None:
            rise = max(0, peak - self._rss_at_train_start)
            memory['train_rss_rise_mb'] = round(rise / 2 ** 20, 1)
            before_val = rise if self._rise_before_val is None else self._rise_before_val
            memory['train_rss_rise_before_val_mb'] = round(before_val / 2 ** 20, 1)
        return memory

    @master_only
    def after_train(self, runner) -> None:
        stem = osp.join(runner.work_dir, self.filename)
        self.parameters = sum(p.numel() for p in runner.model.parameters())  # a grown model's
        self.metric_key = self.metric_key or self._picked or 'loss'  # no validation ran
        summary = dict(metric_key=self.metric_key, parameters=self.parameters,
                       training_seconds=round(self.training_seconds(), 2), **peak_memory_mb())
        summary.update(self._training_memory())
        with open(stem + '.json', 'w') as handle:
            json.dump(dict(summary, **self.history), handle)
        plot_curves(self.history, self.metric_key, stem + '.png')
        runner.logger.info(f'training curves written to {stem}.png')
