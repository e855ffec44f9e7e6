"""BatchNorm statistics that match the weights: PreciseBN and a BN momentum schedule.

A BatchNorm layer trains on batch statistics but evaluates with running statistics, an
exponential average (``momentum`` 0.1 in PyTorch) of the batch statistics of past iterations.
While the weights move fast (early training, from scratch, high learning rate) the running
statistics describe weights of several iterations ago, and a model can validate far worse with
them than with batch statistics. Three remedies:

- :class:`PreciseBNHook` (pycls / detectron2 "PreciseBN", Wu & Johnson 2021): before every
  validation and every checkpoint of a training run, recompute the running mean and variance of
  every BatchNorm as the plain average over ``num_iters`` training batches with the current
  weights.
- :class:`BNMomentumHook`: a higher BN momentum early in training (fast tracking), decaying
  linearly to the model's own value.
- :class:`WindowBNHook`: PreciseBN without its forward passes: before each validation and
  checkpoint the running statistics are the plain average of the batch statistics of the last
  ``window`` training iterations, which the training forward passes compute anyway.

:class:`RecomputeBNHook` recomputes a saved checkpoint's statistics before testing
(``tools/test.py --recompute-bn N``). All four are registered as ``effnet_backbones.<name>``
(:mod:`tasks.engine.registry`); ``configs/_base_/precise_bn.py`` and ``docs/training_recipes.md``
show how to turn them on.
"""
from __future__ import annotations

import random
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.dist import all_reduce, get_dist_info
from mmengine.hooks import CheckpointHook, EMAHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.utils.data import DataLoader, DistributedSampler

__all__ = ['PreciseBNHook', 'RecomputeBNHook', 'BNMomentumHook', 'WindowBNHook', 'batch_norms',
           'training_batches', 'update_bn_stats', 'stochastic_layers', 'PRECISE_BN_SECONDS_KEY']

#: Message-hub key of the seconds :class:`PreciseBNHook` has spent in this run so far (the
#: training curves record it at every validation, so benchmarks can tell it from training).
PRECISE_BN_SECONDS_KEY = 'precise_bn_seconds'

_BUFFERS = ('running_mean', 'running_var')
#: class names of the stochastic-depth modules of timm, torchvision and this library
_STOCHASTIC_NAMES = frozenset({'DropPath', 'DropBlock2d', 'StochasticDepth'})


def batch_norms(model: nn.Module) -> List[Tuple[str, _BatchNorm]]:
    """Every BatchNorm (1d/2d/3d, SyncBatchNorm) of ``model`` that keeps running statistics."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, _BatchNorm) and module.track_running_stats
            and module.running_mean is not None]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def _forward_tensor(model: nn.Module, batch: Any) -> None:
    """One forward pass as ``BaseModel.train_step`` makes it (preprocess with ``training=True``,
    then unpack like ``BaseModel._run_forward``), in ``mode='tensor'``: no loss, no targets."""
    preprocessor = getattr(model, 'data_preprocessor', None)
    data = preprocessor(batch, True) if preprocessor is not None else batch
    if isinstance(data, dict):
        model(**data, mode='tensor')
    elif isinstance(data, (list, tuple)):
        model(*data, mode='tensor')
    else:
        raise TypeError(f'the data preprocessor returned {type(data).__name__}; '
                        'PreciseBN needs a dict, list or tuple')


@contextmanager
def _rng_preserved() -> Iterator[None]:
    """Leave Python's, NumPy's and torch's global random state as they were: the batches drawn
    (augmentation, random crops) and drop path in train mode must not change what training sees."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f'{name} must be a positive int, got {value!r}')


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f'{name} must be True or False, got {value!r}')


def _average_across_ranks(layers: Iterable[_BatchNorm]) -> None:
    """Replace each layer's running statistics by their mean over the ranks."""
    for bn in layers:
        for key in _BUFFERS:
            all_reduce(getattr(bn, key), op='mean')


def stochastic_layers(model: nn.Module) -> List[nn.Module]:
    """Every dropout and drop-path module of ``model``: ``nn.Dropout*``, and modules named like
    timm's ``DropPath`` / ``DropBlock2d``, torchvision's ``StochasticDepth`` and ours."""
    return [module for module in model.modules()
            if isinstance(module, _DropoutNd) or type(module).__name__ in _STOCHASTIC_NAMES]


@torch.no_grad()
def update_bn_stats(model: nn.Module, batches: Iterable[Any], num_iters: int = 20,
                    forward=_forward_tensor, deterministic: bool = False) -> Dict[str, Any]:
    """Recompute the running mean/var of ``model``'s BatchNorms over ``num_iters`` batches.

    The model runs in train mode (``model.train()``, so a backbone's ``norm_eval`` or frozen
    stages keep their norms in eval mode: those are not recomputed) under ``torch.no_grad``. Each
    recomputed layer averages its batch statistics with equal weight (``momentum=None`` after
    ``reset_running_stats``); its momentum, its ``num_batches_tracked`` and every module's
    train/eval mode are restored afterwards. A layer no batch reached keeps its statistics.

    Args:
        model: the (unwrapped) model.
        batches: an iterable of data batches as the train dataloader yields them; it must hold
            at least ``num_iters`` batches (fewer are used, with what they give, if not).
        num_iters: batches to average over.
        forward: ``forward(model, batch)`` runs one batch; default: the data preprocessor with
            ``training=True``, then ``model(**data, mode='tensor')``.
        deterministic: dropout and drop path in eval mode while the statistics are gathered,
            so that they describe the network that is evaluated (all paths kept) rather than
            the thinned networks training samples; BatchNorm still in train mode.

    Returns:
        ``dict(layers=..., batches=..., samples=...)``: layers recomputed, batches and samples
        used (``layers`` is 0, and nothing changed, for a model without BatchNorm in train mode
        or without batches).
    """
    modes = {module: module.training for module in model.modules()}
    model.train()
    if deterministic:
        for module in stochastic_layers(model):
            module.eval()
    layers = [(name, bn) for name, bn in batch_norms(model) if bn.training]
    if not layers:
        for module, mode in modes.items():
            module.train(mode)
        return dict(layers=0, batches=0, samples=0)
    saved = {name: (bn.momentum, bn.num_batches_tracked.clone(),
                    [getattr(bn, key).clone() for key in _BUFFERS]) for name, bn in layers}
    used = samples = reached = 0
    try:
        for bn in (bn for _, bn in layers):
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: every batch counts the same
        for batch in batches:
            if used >= num_iters:
                break
            forward(model, batch)
            used += 1
            samples += _batch_len(batch)
    finally:
        for name, bn in layers:
            momentum, tracked, buffers = saved[name]
            if used == 0 or int(bn.num_batches_tracked) == 0:  # no batch reached it: as it was
                for key, value in zip(_BUFFERS, buffers):
                    getattr(bn, key).copy_(value)
            else:
                reached += 1
            bn.momentum = momentum
            bn.num_batches_tracked.copy_(tracked)
        for module, mode in modes.items():
            module.train(mode)
    return dict(layers=reached, batches=used, samples=samples)


def _batch_len(batch: Any) -> int:
    if isinstance(batch, dict) and 'inputs' in batch:
        return len(batch['inputs'])
    try:
        return len(batch)
    except TypeError:
        return 0


class PreciseBNHook(Hook):
    """Recompute the BatchNorm statistics before each validation and checkpoint of training.

    Before every validation run from the training loop (``before_val_epoch``) and before every
    checkpoint it writes (``before_save_checkpoint``), the running mean and variance of every
    BatchNorm in train mode are recomputed as the plain average over ``num_iters`` batches drawn
    from the train dataset with the current weights (:func:`update_bn_stats`). A checkpoint gets
    the recomputed statistics in its ``state_dict``, so ``tools/test.py`` and ``infer.py`` use
    them. Statistics are computed once per iteration: a validation and a checkpoint at the same
    iteration share them.

    The batches come from a DataLoader of its own over ``runner.train_dataloader``'s dataset
    (same batch size, collate function, workers, not persistent), with a sampler seeded by the
    run's seed and the iteration: the training loop's iterator and sampler are not touched, and
    Python's, NumPy's and torch's global random state are restored afterwards, so training takes
    the same steps with or without this hook. In a distributed run every rank uses its own shard
    and the statistics are averaged across ranks.

    With MMEngine's ``EMAHook`` the statistics are computed for the weights that get evaluated
    and saved, the EMA ones: EMAHook (priority NORMAL) swaps the EMA weights into the model in
    its ``before_val_epoch`` and into the checkpoint in its ``before_save_checkpoint``; this hook's
    priority BELOW_NORMAL runs it after both (for a checkpoint it recomputes on the EMA copy of
    the model). A run where this hook would come first stops in ``before_run``.

    Nothing is saved in checkpoints, so resuming needs nothing. The cost is ``num_iters`` forward
    passes (no backward) per validation / checkpoint. Outside training (``tools/test.py``,
    ``runner.val()``) it does nothing; there :class:`RecomputeBNHook` (``tools/test.py
    --recompute-bn N``) does the same for a saved checkpoint.

    Args:
        num_iters: training batches the statistics average over (pycls and detectron2 use 200
            batches of ImageNet/COCO). Fewer batches give noisier statistics: with batches of
            four 128 px crops of a 10-class MRI set, one checkpoint validated at 0.165-0.234
            mean foreground Dice over four draws of 20 batches, at 0.220-0.233 over three
            draws of 100 (docs/quality.md, section 1f); the medical recipe uses 100.
        deterministic: dropout and drop path off while recomputing (:func:`update_bn_stats`).
    """

    priority = 'BELOW_NORMAL'  # after EMAHook (NORMAL): see the class docstring

    def __init__(self, num_iters: int = 20, deterministic: bool = False) -> None:
        _check_positive_int('num_iters', num_iters)
        _check_flag('deterministic', deterministic)
        self.num_iters, self.deterministic = num_iters, deterministic
        self._training = False
        self._done_iters = 0  # training iterations the weights have been through
        # statistics computed for the current weights; dropped when the next iteration starts
        self._stats: Optional[Dict[str, List[torch.Tensor]]] = None

    # ---------------------------------------------------------------- runner events

    def before_run(self, runner) -> None:
        names = [type(hook).__name__ for hook in runner.hooks]
        emas = [index for index, hook in enumerate(runner.hooks) if isinstance(hook, EMAHook)]
        if emas and self in runner.hooks and runner.hooks.index(self) < emas[0]:
            raise ValueError(f'PreciseBNHook must run after EMAHook (hook order: {names}), so that '
                             'it recomputes the statistics of the EMA weights; keep its priority '
                             "below EMAHook's")

    def before_train(self, runner) -> None:
        self._training, self._done_iters, self._stats = True, runner.iter, None

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._stats = None  # the weights are about to change

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        # runner.iter counts this iteration only after the hooks (the checkpoint hook's included)
        self._done_iters = runner.iter + 1

    def after_train(self, runner) -> None:
        self._training, self._stats = False, None

    def before_val_epoch(self, runner) -> None:
        if self._training:
            # EMAHook, earlier, has already swapped the EMA weights in: this is the evaluated model
            self._precise(runner, _unwrap(runner.model))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self._training:
            return
        ema = self._ema_hook(runner)
        # the saved weights: the EMA ones if EMAHook put them in the checkpoint, else the model's
        target = ema.ema_model.module if ema is not None else _unwrap(runner.model)
        self._precise(runner, target)
        state = checkpoint.get('state_dict', {})
        for name, values in (self._stats or {}).items():
            for key, value in zip(_BUFFERS, values):
                if f'{name}.{key}' in state:
                    state[f'{name}.{key}'] = value.detach().cpu().clone()

    # ---------------------------------------------------------------- work

    @staticmethod
    def _ema_hook(runner) -> Optional[EMAHook]:
        for hook in runner.hooks:
            if isinstance(hook, EMAHook) and getattr(hook, 'ema_model', None) is not None:
                return hook
        return None

    def _precise(self, runner, model: nn.Module) -> None:
        """Give ``model`` the statistics of this iteration, computing them if not done yet."""
        if not batch_norms(model):
            return
        if self._stats is not None:  # a validation and a checkpoint after the same iteration
            self._apply(model)
            return
        start = time.time()
        with _rng_preserved():
            done = update_bn_stats(model, self._batches(runner), self.num_iters,
                                   deterministic=self.deterministic)
        hub = getattr(runner, 'message_hub', None)  # every Runner has one
        if hub is not None:
            spent = time.time() - start
            hub.update_info(PRECISE_BN_SECONDS_KEY,
                            float(hub.get_info(PRECISE_BN_SECONDS_KEY) or 0.0) + spent)
        world_size = get_dist_info()[1]
        layers = dict(batch_norms(model))
        if world_size > 1 and done['layers']:
            _average_across_ranks(layers.values())
        self._stats = {name: [getattr(bn, key).detach().clone() for key in _BUFFERS]
                       for name, bn in layers.items()}
        runner.logger.info(
            f"PreciseBN: recomputed the running statistics of {done['layers']} BatchNorm layers "
            f"over {done['batches']} training batches ({done['samples']} samples"
            f"{f' per rank, averaged over {world_size} ranks' if world_size > 1 else ''}) at "
            f'iteration {self._done_iters} in {time.time() - start:.1f} s')
        if done['batches'] < self.num_iters:
            runner.logger.warning(f"PreciseBN: the train data gave {done['batches']} batches, "
                                  f'not num_iters={self.num_iters}')

    def _apply(self, model: nn.Module) -> None:
        for name, bn in batch_norms(model):
            if name in self._stats:
                for key, value in zip(_BUFFERS, self._stats[name]):
                    getattr(bn, key).copy_(value)

    def _batches(self, runner) -> Iterator[Any]:
        """Batches from the train dataset, not from the training loop's iterator."""
        return training_batches(runner.train_dataloader, self.num_iters,
                                seed=int(runner.seed or 0),
                                epoch_start=self._done_iters * self.num_iters)


def training_batches(source: DataLoader, num_iters: int, seed: int = 0,
                     epoch_start: int = 0) -> Iterator[Any]:
    """Up to ``num_iters`` shuffled batches of ``source``'s dataset from a loader of its own.

    Same batch size, collate function and workers as ``source``, not persistent; a sampler
    seeded by ``seed`` (each rank its own shard in a distributed run) goes through epoch after
    epoch from ``epoch_start``, since small datasets hold fewer than ``num_iters`` batches.
    ``source``'s own iterator and sampler are not touched.
    """
    dataset = source.dataset
    rank, world_size = get_dist_info()
    batch_size = source.batch_size or 1
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed, drop_last=False)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                        collate_fn=source.collate_fn, num_workers=source.num_workers,
                        worker_init_fn=source.worker_init_fn, pin_memory=source.pin_memory,
                        # full batches only, unless the dataset is smaller than one batch
                        drop_last=len(sampler) >= batch_size, persistent_workers=False)
    for epoch in range(num_iters):  # at least one batch per epoch
        sampler.set_epoch(epoch_start + epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            return


class RecomputeBNHook(Hook):
    """Recompute a loaded checkpoint's BatchNorm statistics from training batches before testing.

    ``tools/test.py --recompute-bn N`` adds it: before the test epoch (and before a validation
    run outside training) the running mean and variance of every BatchNorm are recomputed with
    :func:`update_bn_stats` over ``num_iters`` batches of the config's ``train_dataloader`` (its
    dataset, crops and augmentation, as :class:`PreciseBNHook` draws them during training), from
    a sampler seeded by ``seed``. For a checkpoint trained without PreciseBN, or with few
    batches, and to measure how much the metric depends on which batches the statistics came
    from (different ``seed``). Global random state is restored afterwards; the checkpoint file
    is not changed.

    Args:
        num_iters: training batches to average over.
        seed: seed of the batch draw.
        deterministic: dropout and drop path off while recomputing (:func:`update_bn_stats`).
    """

    priority = 'BELOW_NORMAL'

    def __init__(self, num_iters: int = 100, seed: int = 0, deterministic: bool = False) -> None:
        _check_positive_int('num_iters', num_iters)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f'seed must be an int, got {seed!r}')
        _check_flag('deterministic', deterministic)
        self.num_iters, self.seed, self.deterministic = num_iters, seed, deterministic
        self._training = False

    def before_train(self, runner) -> None:
        self._training = True

    def after_train(self, runner) -> None:
        self._training = False

    def before_test_epoch(self, runner) -> None:
        self._recompute(runner)

    def before_val_epoch(self, runner) -> None:
        if not self._training:  # validation inside training is PreciseBNHook's job
            self._recompute(runner)

    def _recompute(self, runner) -> None:
        source = runner.cfg.get('train_dataloader')
        if not source:
            raise ValueError('RecomputeBNHook (--recompute-bn) draws training batches, but the '
                             'config has no train_dataloader')
        loader = runner.build_dataloader(source, seed=self.seed)
        model = _unwrap(runner.model)
        start = time.time()
        with _rng_preserved():
            done = update_bn_stats(model, training_batches(loader, self.num_iters, self.seed),
                                   self.num_iters, deterministic=self.deterministic)
        if get_dist_info()[1] > 1 and done['layers']:
            _average_across_ranks(bn for _, bn in batch_norms(model))
        runner.logger.info(
            f"recompute-bn: running statistics of {done['layers']} BatchNorm layers recomputed "
            f"over {done['batches']} training batches ({done['samples']} samples, seed "
            f'{self.seed}) in {time.time() - start:.1f} s')
        if done['batches'] < self.num_iters:
            runner.logger.warning(f"recompute-bn: the train data gave {done['batches']} batches, "
                                  f'not {self.num_iters}')


class BNMomentumHook(Hook):
    """BatchNorm momentum from ``start`` down to ``end`` over the first ``iters`` iterations.

    PyTorch's BN momentum is the weight of the newest batch in the running statistics
    (``running = (1 - momentum) * running + momentum * batch``; 0.1 by default, i.e. about the
    last 10 batches). A higher value early in training lets the running statistics keep up with
    fast-moving weights; it falls linearly, ``start + (end - start) * min(1, iter / iters)``, set
    before every training iteration. Layers with ``momentum=None`` (cumulative average) are left
    alone. The value (of the first layer) is logged as ``bn_momentum``. Stateless: a resumed run
    continues from its iteration.

    Args:
        start: momentum at iteration 0, in (0, 1].
        end: momentum from ``iters`` on; None: each layer's own momentum when training starts
            (0.1 for PyTorch's default BN, 0.01 for torchvision's B5-B7).
        iters: length of the decay: an int counts iterations; a float in (0, 1) is a fraction of
            ``train_cfg.max_iters``, so it follows ``--max-iters``.
    """

    priority = 'NORMAL'

    def __init__(self, start: float = 0.5, end: Optional[float] = None,
                 iters: Union[int, float] = 0.25) -> None:
        if not 0 < start <= 1:
            raise ValueError(f'start must be in (0, 1], got {start!r}')
        if end is not None and not 0 < end <= 1:
            raise ValueError(f'end must be None or in (0, 1], got {end!r}')
        if isinstance(iters, bool) or not (isinstance(iters, int) and iters >= 1
                                           or isinstance(iters, float) and 0 < iters < 1):
            raise ValueError(f'iters must be an int >= 1 (iterations) or a float in (0, 1) '
                             f'(fraction of max_iters), got {iters!r}')
        self.start, self.end, self.iters = start, end, iters
        self._layers: List[Tuple[_BatchNorm, float]] = []
        self._length = 1

    def before_train(self, runner) -> None:
        model = _unwrap(runner.model)
        self._layers = [(bn, bn.momentum if self.end is None else self.end)
                        for _, bn in batch_norms(model) if bn.momentum is not None]
        self._length = self.iters if isinstance(self.iters, int) else \
            max(1, round(self.iters * runner.max_iters))
        if self._layers:
            final = self.end if self.end is not None else "each layer's own"
            runner.logger.info(f'BN momentum: {self.start} linearly to {final} over '
                               f'{self._length} iterations ({len(self._layers)} layers)')

    def momentum(self, iteration: int, final: float) -> float:
        """The momentum at ``iteration`` for a layer whose final momentum is ``final``."""
        if iteration >= self._length:
            return final
        return self.start + (final - self.start) * iteration / self._length

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        if not self._layers:
            return
        for bn, final in self._layers:
            bn.momentum = self.momentum(runner.iter, final)
        runner.message_hub.update_scalar('train/bn_momentum', self._layers[0][0].momentum)

    def after_train(self, runner) -> None:
        for bn, final in self._layers:  # the model leaves training with its final momentum
            bn.momentum = final


class WindowBNHook(Hook):
    """Running BatchNorm statistics averaged over the last ``window`` training iterations.

    PreciseBN (:class:`PreciseBNHook`) pays ``num_iters`` extra forward passes per validation:
    with the medical recipe on a CPU, more time than the training iterations between two
    validations. This hook gets statistics of the same kind for free: ``window`` iterations
    before every validation and checkpoint of the training loop, each BatchNorm in train mode
    has its running statistics reset and switched to a cumulative average (``momentum=None``),
    so when the event comes they hold the plain average of the batch statistics of the last
    ``window`` iterations (every forward call counts once: a layer called per pyramid level
    averages over its calls). Then each layer gets its momentum back and the exponential
    average goes on from there. In train mode a BatchNorm normalises with batch statistics,
    so the training steps are exactly those of a run without this hook.

    The difference from PreciseBN: the statistics come from the weights of the last ``window``
    iterations, not only the current ones, and from ``window`` batches rather than
    ``num_iters``; how much that costs in validation metric is measured in docs/ablations.md.

    Events are the train loop's validations (every ``val_interval`` iterations from
    ``val_begin``, and the last iteration) and the ``CheckpointHook``'s saves (every
    ``interval`` iterations from ``save_begin``, and the last with ``save_last``); when two
    events are closer than ``window`` the second window starts at the first event. Iteration-
    based training only. In a distributed run the statistics are averaged across ranks at
    each event. With ``EMAHook`` the evaluated weights are the EMA ones, whose statistics the
    training batches do not give: the run stops in ``before_run`` (use :class:`PreciseBNHook`).

    Args:
        window: training iterations the statistics average over (the batches of the
            ``window`` iterations before each event).
        max_fraction: at most this fraction of the iterations done at the event: early in a
            run, when the weights move fast, the window shrinks (0.2: 5 iterations before
            iteration 25, the full 25 from iteration 125 on).
    """

    priority = 'BELOW_NORMAL'

    def __init__(self, window: int = 25, max_fraction: float = 1.0) -> None:
        _check_positive_int('window', window)
        if isinstance(max_fraction, bool) or not isinstance(max_fraction, (int, float)) \
                or not 0 < max_fraction <= 1:
            raise ValueError(f'max_fraction must be in (0, 1], got {max_fraction!r}')
        self.window, self.max_fraction = window, float(max_fraction)
        self._events: List[int] = []
        # layer -> (momentum, num_batches_tracked) while a window is open, else empty
        self._open: Dict[_BatchNorm, Tuple[Optional[float], torch.Tensor]] = {}

    def before_run(self, runner) -> None:
        if any(isinstance(hook, EMAHook) for hook in runner.hooks):
            raise ValueError('WindowBNHook averages the batch statistics of the training '
                             'weights, but EMAHook evaluates and saves the EMA weights; use '
                             'effnet_backbones.PreciseBNHook with EMAHook')

    def before_train(self, runner) -> None:
        self._events = self._event_iters(runner)

    @staticmethod
    def _event_iters(runner) -> List[int]:
        """Iterations (counted after they are done) at which a validation or checkpoint comes."""
        loop = runner.train_loop
        if not isinstance(loop, IterBasedTrainLoop):
            raise ValueError('WindowBNHook needs an iteration-based train loop '
                             "(train_cfg=dict(by_epoch=False, ...)), got "
                             f'{type(loop).__name__}')
        max_iters = loop.max_iters
        events = {max_iters}
        if runner.val_loop is not None:
            interval, begin = loop.val_interval, loop.val_begin
            events.update(i for i in range(interval, max_iters + 1, interval) if i >= begin)
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and not hook.by_epoch and hook.interval > 0:
                events.update(i for i in range(hook.save_begin + hook.interval, max_iters + 1,
                                               hook.interval))
        return sorted(events)

    def _window_start(self, done: int) -> Optional[int]:
        """The first iteration of the window of the next event after ``done`` iterations."""
        previous = 0
        for event in self._events:
            if event > done:
                length = min(self.window, max(1, round(self.max_fraction * event)))
                return max(event - length, previous)
            previous = event
        return None

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        start = self._window_start(runner.iter)
        if start is None or runner.iter < start:
            return
        # A resumed run may start inside a window, and a layer may join one that is open (a
        # model grown in place by ProgressiveGrowthHook has new BatchNorms): each averages over
        # what is left of the window.
        for _, bn in batch_norms(_unwrap(runner.model)):
            if bn.training and bn not in self._open:
                self._open[bn] = (bn.momentum, bn.num_batches_tracked.clone())
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average: every batch counts the same

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        # runner.iter counts this iteration only after the hooks; the checkpoint hook
        # (priority VERY_LOW) saves after this one, the validation comes after all of them
        if self._open and runner.iter + 1 in self._events:
            self._close()

    def after_train(self, runner) -> None:
        self._close()

    def _close(self) -> None:
        if get_dist_info()[1] > 1:
            _average_across_ranks(self._open)
        for bn, (momentum, tracked) in self._open.items():
            bn.momentum = momentum
            bn.num_batches_tracked.add_(tracked)
        self._open = {}
