"""Training hooks shared by the tasks: stop on a NaN loss, plot the training curves."""
from __future__ import annotations

import json
import math
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

from mmengine.dist import master_only
from mmengine.hooks import Hook

__all__ = ['NonFiniteLossError', 'NanLossGuardHook', 'TrainingCurvesHook', 'plot_curves']


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


def plot_curves(history: Dict[str, List[Sequence[float]]], metric_key: str, path: str) -> None:
    """Write a PNG with the training loss (left) and the validation metric (right) per iteration."""
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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class TrainingCurvesHook(Hook):
    """Record the training loss and a validation metric; plot them when training ends.

    Writes ``training_curves.png`` and ``training_curves.json`` to the work dir. The history
    travels in checkpoints, so a resumed run plots the whole run.

    Args:
        metric_key: validation metric to plot, e.g. 'mDice' or 'coco/bbox_mAP'; default: the one
            the checkpoint hook picks the best checkpoint by (``save_best``).
        filename: stem of the output files.
    """

    priority = 'LOW'
    META_KEY = 'training_curves'

    def __init__(self, metric_key: Optional[str] = None, filename: str = 'training_curves') -> None:
        self.metric_key = metric_key
        self.filename = filename
        self.history: Dict[str, List[List[float]]] = {'loss': [], 'metric': []}

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[Dict[str, Any]] = None) -> None:
        if outputs and 'loss' in outputs:
            self.history['loss'].append([runner.iter + 1, _scalar(outputs['loss'])])

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if metrics and self.metric_key in metrics:
            self.history['metric'].append([runner.iter, float(metrics[self.metric_key])])

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[self.META_KEY] = self.history

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get('meta', {}).get(self.META_KEY)
        if saved:
            self.history = {key: [list(point) for point in points] for key, points in saved.items()}

    def before_run(self, runner) -> None:
        if self.metric_key is None:
            picked = [key for hook in runner.hooks for key in getattr(hook, 'key_indicators', [])]
            self.metric_key = picked[0] if picked else 'loss'

    def before_train(self, runner) -> None:
        # a resumed run keeps the points up to where it resumes; a fresh one (even one that loaded
        # weights from another run's checkpoint) starts empty
        self.history = {key: [point for point in points if point[0] <= runner.iter]
                        for key, points in self.history.items()}

    @master_only
    def after_train(self, runner) -> None:
        stem = osp.join(runner.work_dir, self.filename)
        with open(stem + '.json', 'w') as handle:
            json.dump(dict(metric_key=self.metric_key, **self.history), handle)
        plot_curves(self.history, self.metric_key, stem + '.png')
        runner.logger.info(f'training curves written to {stem}.png')
