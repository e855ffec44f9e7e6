"""Progressive compound training: one run that trains B0, grows it into B2, then into B4.

A config lists phases, each a variant with its own crop (the compound rule: resolution grows
with the variant), iterations and optional batch, loader and model overrides::

    progressive = dict(
        mode='exact',                               # or 'net2wider' (see effnet_backbones.transplant)
        rewarm=dict(iters=50, start_factor=0.1),    # learning-rate re-warm after each growth
        phases=[dict(arch='b0', iters=600, crop_size=160),
                dict(arch='b2', iters=400, crop_size=224),
                dict(arch='b4', iters=400, crop_size=256)])

:func:`apply_progressive` (called by ``prepare_train_config``) builds the model at the first
phase, sets ``train_cfg.max_iters`` to the phases' total (or scales the phases to a
``--max-iters``/``cpu_profile`` length), appends one ``LinearLR`` re-warm per boundary to
``param_scheduler`` and adds a :class:`ProgressiveGrowthHook` and a
:class:`~tasks.engine.flops.TrainingFlopsHook`. At each boundary the hook grows the model in
place (backbone, scSE taps and decoder, through :func:`effnet_backbones.transplant`), carries the
optimiser state of the old parameters into their grown slices (new elements and new tensors
start fresh), keeps every learning rate where the schedule has it, and switches the training
loader to the phase's crop and batch. Resuming in any phase rebuilds that phase's model and
loader before the checkpoint loads, so it continues exactly as an uninterrupted run.
"""
from __future__ import annotations

import copy
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import build_optim_wrapper

from effnet_backbones.registry import MODELS
from effnet_backbones.spec import ARCHS, check_arch
from effnet_backbones.transplanting import MODES, transplant

from .checkpoint import checkpoint_meta
from .config import rescale_schedule
from .transplant import model_config_for

__all__ = ['PROGRESSIVE_KEYS', 'PHASE_KEYS', 'Phase', 'parse_phases', 'set_progressive_length',
           'apply_progressive',
           'ProgressiveGrowthHook', 'carry_optimizer_state']

PROGRESSIVE_KEYS = ('mode', 'phases', 'rewarm')
PHASE_KEYS = ('arch', 'iters', 'crop_size', 'batch_size', 'train_dataloader', 'model')
REWARM_KEYS = ('iters', 'start_factor')
PHASE_INFO_KEY = 'progressive_phase'  # message hub: index of the phase being trained


def _log(message: str, level: int = logging.INFO) -> None:
    print_log(message, logger='current', level=level)


# ---------------------------------------------------------------------------------------------
# The phases
# ---------------------------------------------------------------------------------------------

@dataclass
class Phase:
    """One phase of a progressive run.

    Args:
        arch: the variant trained in this phase.
        start: the run's iteration at which the phase begins.
        iters: iterations of the phase.
        dataloader: overrides merged into ``train_dataloader`` (``crop_size`` and ``batch_size``
            given on the phase land here).
        model: overrides merged into the model config (e.g. ``encoder_options.drop_path_rate``).
    """

    arch: str
    start: int
    iters: int
    dataloader: Dict[str, Any] = field(default_factory=dict)
    model: Dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> int:
        """The iteration after the phase's last."""
        return self.start + self.iters

    def describe(self) -> str:
        crop = self.dataloader.get('dataset', {}).get('crop_size')
        batch = self.dataloader.get('batch_size')
        extra = ''.join([f', crop {crop}' if crop else '', f', batch {batch}' if batch else ''])
        return f'efficientnet_{self.arch} for iterations {self.start}-{self.end - 1}{extra}'


def _check_keys(where: str, given: Mapping[str, Any], valid: Sequence[str]) -> None:
    """Raise naming ``where``, the unknown keys and the valid ones."""
    unknown = set(given) - set(valid)
    if unknown:
        raise ValueError(f'{where}: unknown keys {sorted(unknown)}; valid: {", ".join(valid)}')


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """``base`` with ``overrides`` merged in, dict by dict (lists and values replace)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _scaled_iters(iters: Sequence[int], total: int) -> List[int]:
    """Phase lengths rescaled to sum to ``total``, each at least 1, keeping their shares."""
    if total < len(iters):
        raise ValueError(f'progressive: {total} iterations cannot hold {len(iters)} phases')
    scale = total / sum(iters)
    scaled = [max(1, round(n * scale)) for n in iters[:-1]]
    scaled.append(total - sum(scaled))
    if scaled[-1] < 1:
        raise ValueError(f'progressive: cannot scale phases {list(iters)} to {total} iterations')
    return scaled


def parse_phases(spec: Mapping[str, Any], max_iters: Optional[int] = None) -> List[Phase]:
    """The phases of a ``progressive`` config, checked; scaled to ``max_iters`` when it is given
    and differs from their sum."""
    phases = spec.get('phases')
    if not isinstance(phases, (list, tuple)) or len(phases) < 2:
        raise ValueError(f'progressive.phases must list at least two phases, e.g. '
                         f"[dict(arch='b0', iters=600, crop_size=160), dict(arch='b2', ...)], "
                         f'got {phases!r}')
    for index, phase in enumerate(phases):
        if not isinstance(phase, Mapping):
            raise ValueError(f'progressive.phases[{index}] must be a dict, got {phase!r}')
        _check_keys(f'progressive.phases[{index}]', phase, PHASE_KEYS)
        if 'arch' not in phase or 'iters' not in phase:
            raise ValueError(f"progressive.phases[{index}] needs 'arch' and 'iters', got {dict(phase)}")
        if not isinstance(phase['iters'], int) or phase['iters'] < 1:
            raise ValueError(f'progressive.phases[{index}].iters must be a positive int, '
                             f'got {phase["iters"]!r}')
    archs = [check_arch(phase['arch']) for phase in phases]
    order = [ARCHS.index(arch) for arch in archs]
    if order != sorted(order):
        raise ValueError(f'progressive.phases grow the model, so their variants must not shrink: '
                         f'got {" -> ".join(archs)}')
    lengths = [phase['iters'] for phase in phases]
    if max_iters is not None and max_iters != sum(lengths):
        lengths = _scaled_iters(lengths, max_iters)
    result, start = [], 0
    for phase, arch, length in zip(phases, archs, lengths):
        loader = dict(copy.deepcopy(phase.get('train_dataloader') or {}))
        if 'crop_size' in phase:
            loader = _merge(loader, dict(dataset=dict(crop_size=phase['crop_size'])))
        if 'batch_size' in phase:
            loader['batch_size'] = phase['batch_size']
        result.append(Phase(arch, start, length, loader, dict(copy.deepcopy(phase.get('model') or {}))))
        start += length
    return result


def _rewarm_schedulers(spec: Mapping[str, Any], phases: Sequence[Phase]) -> List[Dict[str, Any]]:
    """One chainable linear warm-up per growth boundary (it multiplies the running schedule)."""
    rewarm = spec.get('rewarm')
    if not rewarm:
        return []
    _check_keys('progressive.rewarm', rewarm, REWARM_KEYS)
    iters, start_factor = int(rewarm.get('iters', 50)), float(rewarm.get('start_factor', 0.1))
    if iters < 1 or not 0 < start_factor <= 1:
        raise ValueError(f'progressive.rewarm needs iters >= 1 and 0 < start_factor <= 1, got '
                         f'{dict(rewarm)}')
    return [dict(type='LinearLR', start_factor=start_factor, by_epoch=False, begin=phase.start,
                 end=min(phase.start + iters, phase.end)) for phase in phases[1:]]


def set_progressive_length(cfg: Config) -> Optional[int]:
    """Make the run as long as its phases (``train_cfg.max_iters`` and every interval and
    scheduler with it), before a ``cpu_profile`` or ``--max-iters`` rescales it. Returns the
    length, or None without ``progressive``."""
    spec = cfg.get('progressive')
    if not spec or not isinstance(spec, Mapping):
        return None
    total = sum(phase.iters for phase in parse_phases(spec))
    rescale_schedule(cfg, total)
    return total


def apply_progressive(cfg: Config) -> Optional[List[Phase]]:
    """Turn ``cfg.progressive`` into the first phase's model and loader, the re-warm schedulers
    and the hooks. Returns the phases, or None without ``progressive``."""
    spec = cfg.get('progressive')
    if not spec:
        return None
    if not isinstance(spec, Mapping):
        raise ValueError(f'progressive must be a dict with keys {PROGRESSIVE_KEYS}, got {spec!r}')
    _check_keys('progressive', spec, PROGRESSIVE_KEYS)
    mode = spec.get('mode', 'exact')
    if mode not in MODES:
        raise ValueError(f'progressive.mode must be one of {MODES}, got {mode!r}')
    if cfg.get('launcher', 'none') != 'none':
        raise ValueError('progressive training grows the model in place, which DDP cannot follow; '
                         'run it on one process (launcher none)')
    max_iters = (cfg.get('train_cfg') or {}).get('max_iters')
    if max_iters is None:
        raise KeyError(f'{cfg.filename}: progressive training needs an iteration-based train_cfg')
    phases = parse_phases(spec, max_iters)  # scaled to --max-iters or a cpu_profile's length
    base_model, base_loader = cfg.model.to_dict(), cfg.train_dataloader.to_dict()
    first = phases[0]
    cfg.model = _merge(model_config_for(base_model, first.arch), first.model)
    cfg.train_dataloader = _merge(base_loader, first.dataloader)
    schedulers = cfg.get('param_scheduler') or []
    schedulers = list(schedulers) if isinstance(schedulers, (list, tuple)) else [schedulers]
    cfg.param_scheduler = schedulers + _rewarm_schedulers(spec, phases)
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(str(hook.get('type', '')).endswith('TrainingFlopsHook') for hook in hooks):
        hooks.append(dict(type='effnet_backbones.TrainingFlopsHook'))
    hooks.append(dict(type='effnet_backbones.ProgressiveGrowthHook', mode=mode,
                      phases=[vars(phase) for phase in phases], model_cfg=base_model,
                      dataloader_cfg=base_loader))
    cfg.custom_hooks = hooks
    _log('progressive training (' + mode + '): '
         + ' -> '.join(phase.describe() for phase in phases))
    return phases


# ---------------------------------------------------------------------------------------------
# Carrying optimiser state through a growth
# ---------------------------------------------------------------------------------------------

def _through_growth(src: nn.Module, dst: nn.Module, tensors: Mapping[str, torch.Tensor]
                    ) -> Dict[str, torch.Tensor]:
    """Per-parameter tensors of ``src`` (by name; absent: zeros) placed where a plain transplant
    puts ``src``'s parameters in ``dst``; every element the source does not cover is zero."""
    shadow_src, shadow_dst = copy.deepcopy(src), copy.deepcopy(dst)
    with torch.no_grad():
        for name, param in shadow_src.named_parameters():
            param.grad = None
            param.copy_(tensors[name] if name in tensors else torch.zeros_like(param))
        for param in shadow_dst.parameters():
            param.grad = None
            param.zero_()
    transplant(shadow_src, shadow_dst, mode='plain')
    return {name: param.detach().clone() for name, param in shadow_dst.named_parameters()}


def carry_optimizer_state(optimizer: torch.optim.Optimizer, src: nn.Module, dst: nn.Module
                          ) -> Dict[str, Dict[str, Any]]:
    """The optimiser state of ``dst``'s parameters, by name, carried from ``src``'s.

    Per-element state (Adam's moments, momentum buffers) is copied into the slice of each grown
    tensor that holds the source's values; other elements start at zero. Scalar state (Adam's
    ``step``) is the source's. Tensors with no source element (new blocks) get no state, so the
    optimiser initialises them as at the start of a run.
    """
    params = dict(src.named_parameters())
    states = {name: optimizer.state.get(param, {}) for name, param in params.items()}
    elementwise = sorted({key for name, state in states.items() for key, value in state.items()
                          if torch.is_tensor(value) and value.shape == params[name].shape
                          and value.dim() > 0})
    scalars = {key: value for state in states.values() for key, value in state.items()
               if key not in elementwise}
    presence = _through_growth(src, dst, {name: torch.ones_like(p) for name, p in params.items()})
    carried = {key: _through_growth(src, dst, {name: state[key] for name, state in states.items()
                                               if key in state})
               for key in elementwise}
    result: Dict[str, Dict[str, Any]] = {}
    if not any(states.values()):  # nothing stepped yet, or a stateless optimiser
        return result
    for name, mask in presence.items():
        if not bool(mask.any()):
            continue
        state = {key: carried[key][name] for key in elementwise}
        state.update({key: value.clone() if torch.is_tensor(value) else value
                      for key, value in scalars.items()})
        result[name] = state
    return result


# ---------------------------------------------------------------------------------------------
# The hook
# ---------------------------------------------------------------------------------------------

class _SkippingIterator:
    """A loader iterator whose first ``free`` items are placeholders: on resume, MMEngine's loop
    skips as many batches as iterations already run, but a later phase's loader only served
    the iterations since its phase began."""

    def __init__(self, iterator: Iterator, free: int) -> None:
        self.iterator, self.free = iterator, free

    def __iter__(self) -> '_SkippingIterator':
        return self

    def __next__(self) -> Any:
        if self.free > 0:
            self.free -= 1
            return None
        return next(self.iterator)


def _swap_children(target: nn.Module, source: nn.Module) -> None:
    """Make ``target`` hold ``source``'s submodules (the object others reference stays)."""
    for name, child in list(source.named_children()):
        setattr(target, name, child)
    target.train(target.training)


class ProgressiveGrowthHook(Hook):
    """Grow the model at each phase boundary of a progressive run (see the module docstring).

    Built by :func:`apply_progressive`; not meant to be configured by hand.

    Args:
        mode: how to grow, 'exact', 'net2wider' or 'plain' (:func:`effnet_backbones.transplant`).
        phases: the phases as dicts of :class:`Phase` fields.
        model_cfg: the model config the phases' variants and overrides apply to.
        dataloader_cfg: the training loader config the phases' overrides apply to.
    """

    # after ParamSchedulerHook (LOW, 70) has set the next iteration's learning rate, before the
    # checkpoint hook (VERY_LOW, 90) saves: a checkpoint at a boundary holds the grown model
    priority = 75

    def __init__(self, mode: str, phases: Sequence[Mapping[str, Any]],
                 model_cfg: Mapping[str, Any], dataloader_cfg: Mapping[str, Any]) -> None:
        self.mode = mode
        self.phases = [Phase(**dict(phase)) for phase in phases]
        self.model_cfg, self.dataloader_cfg = dict(model_cfg), dict(dataloader_cfg)
        self._resumed_phase: Optional[int] = None

    # ---- what each phase is ------------------------------------------------------------------

    def phase_at(self, iteration: int) -> int:
        """Index of the phase that trains iteration ``iteration`` (0-based; the end: the last)."""
        for index, phase in enumerate(self.phases):
            if iteration < phase.end:
                return index
        return len(self.phases) - 1

    def model_config(self, index: int) -> Dict[str, Any]:
        phase = self.phases[index]
        return _merge(model_config_for(self.model_cfg, phase.arch), phase.model)

    def _build_model(self, index: int, like: nn.Module, seed: int) -> nn.Module:
        """Phase ``index``'s model, initialised from ``seed``: a resumed run draws the new
        channels' initial weights exactly as the uninterrupted one did."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MODELS.build(self.model_config(index))
        device = next(like.parameters()).device
        return model.to(device).train(like.training)

    @staticmethod
    def _seed(runner, index: int) -> int:
        return (int(runner.seed or 0) * 1000 + index) % 2 ** 31

    @staticmethod
    def _model(runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    # ---- the optimiser and the loader ----------------------------------------------------------

    def _rebuild_optimizer(self, runner, state: Optional[Dict[str, Dict[str, Any]]]) -> None:
        """Point the optimiser (the same object the schedulers drive) at the grown model's
        parameters, in the groups the config's constructor makes, at the schedule's values."""
        optimizer = runner.optim_wrapper.optimizer
        fresh = build_optim_wrapper(self._model(runner), copy.deepcopy(runner.cfg.optim_wrapper))
        scheduled = {scheduler.param_name for scheduler in _schedulers(runner)}
        reference = optimizer.param_groups[0]
        for group in fresh.optimizer.param_groups:
            for name in scheduled:
                if name not in group or name not in reference:  # e.g. Adam's momentum: in betas
                    continue
                base = group[name]
                initial = reference.get(f'initial_{name}', reference[name])
                group[f'initial_{name}'] = base
                # the schedule's current factor; every group follows the same one
                group[name] = base * (reference[name] / initial if initial else 1.0)
        optimizer.param_groups[:] = fresh.optimizer.param_groups
        names = {param: name for name, param in self._model(runner).named_parameters()}
        optimizer.state = defaultdict(dict)
        for group in optimizer.param_groups:
            for param in group['params']:
                if state and names.get(param) in state:
                    optimizer.state[param] = state[names[param]]
        for scheduler in _schedulers(runner):
            key = f'initial_{scheduler.param_name}'
            if all(key in group for group in optimizer.param_groups):
                scheduler.base_values = [group[key] for group in optimizer.param_groups]

    def _set_loader(self, runner, index: int, served: int = 0) -> None:
        """Train on phase ``index``'s loader from now on; ``served``: placeholders to hand out
        first (the batches MMEngine's resume skips that this loader never served)."""
        from mmengine.runner.loops import _InfiniteDataloaderIterator
        loop = runner.train_loop
        config = _merge(self.dataloader_cfg, self.phases[index].dataloader)
        diff_rank_seed = runner._randomness_cfg.get('diff_rank_seed', False)
        loop.dataloader = runner.build_dataloader(config, seed=runner.seed,
                                                  diff_rank_seed=diff_rank_seed)
        iterator = _InfiniteDataloaderIterator(loop.dataloader)
        loop.dataloader_iterator = _SkippingIterator(iterator, served) if served else iterator

    # ---- growing --------------------------------------------------------------------------

    def _grow(self, runner, index: int) -> None:
        model = self._model(runner)
        seed = self._seed(runner, index)
        grown = self._build_model(index, model, seed)
        reports = [transplant(model, grown, mode=self.mode, seed=seed)]  # seed: net2wider's noise
        state = carry_optimizer_state(runner.optim_wrapper.optimizer, model, grown)
        for ema in _ema_models(runner):  # the average grows the same way, from its own weights
            grown_average = self._build_model(index, ema, seed)
            transplant(ema, grown_average, mode=self.mode, seed=seed)
            _swap_children(ema, grown_average)
        _swap_children(model, grown)
        self._rebuild_optimizer(runner, state)
        self._set_loader(runner, index)
        runner.message_hub.update_info(PHASE_INFO_KEY, index)
        previous, phase = self.phases[index - 1], self.phases[index]
        lr = runner.optim_wrapper.optimizer.param_groups[0]['lr']
        _log(f'progressive: phase {index + 1}/{len(self.phases)} at iteration {phase.start}: '
             f'efficientnet_{previous.arch} -> {phase.describe()} ({self.mode}); '
             f'{sum(p.numel() for p in model.parameters()):,} parameters, lr {lr:.3g}\n'
             + '\n'.join(report.summary() for report in reports))

    def before_run(self, runner) -> None:
        if is_model_wrapper(runner.model):
            raise RuntimeError('progressive training grows the model in place, which a model '
                               'wrapper (DDP) cannot follow; run it on one process')
        resume_iter = _resume_iteration(runner)
        index = self.phase_at(resume_iter) if resume_iter else 0
        runner.message_hub.update_info(PHASE_INFO_KEY, index)
        if index == 0:
            return
        # the checkpoint holds phase `index`'s model: build that shape before it loads
        model = self._model(runner)
        seed = self._seed(runner, index)
        _swap_children(model, self._build_model(index, model, seed))
        for ema in _ema_models(runner):
            _swap_children(ema, self._build_model(index, ema, seed))
        self._rebuild_optimizer(runner, state=None)
        self._resumed_phase = index
        _log(f'progressive: resuming at iteration {resume_iter}, in phase {index + 1}/'
             f'{len(self.phases)} ({self.phases[index].describe()})')

    def before_train(self, runner) -> None:
        if self._resumed_phase:
            self._set_loader(runner, self._resumed_phase, served=self.phases[self._resumed_phase].start)
            self._resumed_phase = None

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[Dict[str, Any]] = None) -> None:
        for index, phase in enumerate(self.phases[1:], start=1):
            if batch_idx + 1 == phase.start:
                self._grow(runner, index)


def _schedulers(runner) -> List[Any]:
    schedulers = runner.param_schedulers or []
    if isinstance(schedulers, Mapping):
        raise RuntimeError('progressive training supports one optimiser (param_scheduler as a list)')
    return list(schedulers)


def _ema_models(runner) -> List[nn.Module]:
    """The averaged models of EMA hooks that have built theirs."""
    return [hook.ema_model.module for hook in runner.hooks
            if getattr(hook, 'ema_model', None) is not None]


def _resume_iteration(runner) -> int:
    """The iteration a resuming run continues from (0 when it does not resume)."""
    if not runner._resume:
        return 0
    path = runner._load_from
    if path is None:
        from mmengine.runner import find_latest_checkpoint
        path = find_latest_checkpoint(runner.work_dir)
    if not path:
        return 0
    return int(checkpoint_meta(path).get('iter', 0))
