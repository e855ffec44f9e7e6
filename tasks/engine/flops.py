"""Training compute: FLOPs per iteration and their running total, in the log and the curves.

Training FLOPs of one iteration are counted the way growth and scaling papers count them: the
forward pass's multiply-accumulates (conv and linear layers, :class:`MacCounter`) on the actual
batch, x 2 FLOPs per MAC, x 3 for forward plus backward. The count is taken on a real training
iteration (no extra forward) and reused while the model's size and the batch's shapes stay the
same, so a progressive run (:mod:`tasks.engine.progressive`) is recounted at each phase.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from effnet_backbones.profile import MacCounter

__all__ = ['TRAIN_FLOPS_KEY', 'FLOPS_PER_MAC', 'TrainingFlopsHook', 'train_flops_of']

#: The message hub's runtime info key holding the run's cumulative training FLOPs (it travels
#: in checkpoints, so a resumed run keeps counting from where it stopped).
TRAIN_FLOPS_KEY = 'train_flops'
#: 2 FLOPs per multiply-accumulate, x 3 for the forward and the (twice as costly) backward pass.
FLOPS_PER_MAC = 2 * 3
_LOG_KEY = 'tflops'  # the log line's name: cumulative training TFLOPs


def train_flops_of(runner) -> Optional[float]:
    """The run's cumulative training FLOPs so far, or None when no :class:`TrainingFlopsHook` runs."""
    return runner.message_hub.get_info(TRAIN_FLOPS_KEY)


def _batch_signature(data_batch: Any) -> Tuple:
    """The shapes of a collated batch's inputs: what its forward cost depends on."""
    inputs = data_batch.get('inputs') if isinstance(data_batch, dict) else data_batch
    if hasattr(inputs, 'shape'):
        return (tuple(inputs.shape),)
    if isinstance(inputs, (list, tuple)):
        return tuple(tuple(getattr(item, 'shape', ())) for item in inputs)
    return ()


class TrainingFlopsHook(Hook):
    """Count training FLOPs per iteration and their total (``tflops`` in the log, ``train_flops``
    in training_curves.json).

    The first iteration of each (model size, batch shapes) pair is counted with forward hooks on
    every conv and linear layer; later ones reuse the count. The total is kept in the message
    hub, so it is saved in checkpoints and continues after a resume.
    """

    # before every other hook's after_train_iter (PreciseBN's extra forwards must not count)
    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self.per_iteration: Dict[Tuple, float] = {}
        self._key: Optional[Tuple] = None
        self._counter: Optional[MacCounter] = None

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_run(self, runner) -> None:
        processor = runner.log_processor
        if not any(item.get('data_src') == _LOG_KEY for item in processor.custom_cfg):
            # a running total: the log shows its current value, not a window mean
            processor.custom_cfg.append(dict(data_src=_LOG_KEY, method_name='current'))

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        model = self._model(runner)
        self._key = (sum(p.numel() for p in model.parameters()), _batch_signature(data_batch))
        if self._key not in self.per_iteration:
            self._counter = MacCounter(model).__enter__()

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[Dict[str, Any]] = None) -> None:
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.per_iteration[self._key] = float(self._counter.macs * FLOPS_PER_MAC)
            self._counter = None
        total = (train_flops_of(runner) or 0.0) + self.per_iteration.get(self._key, 0.0)
        runner.message_hub.update_info(TRAIN_FLOPS_KEY, total)
        runner.message_hub.update_scalar(f'train/{_LOG_KEY}', total / 1e12)

    def before_train(self, runner) -> None:
        if runner.iter == 0:  # a fresh run (even one that loaded another run's weights) starts at 0
            runner.message_hub.update_info(TRAIN_FLOPS_KEY, 0.0)
