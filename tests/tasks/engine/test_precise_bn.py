"""PreciseBN (BN running statistics recomputed before validation and checkpoints) and the BN
momentum schedule: exact statistics on tiny models, and inside tiny real training runs (with and
without EMA) where training itself must stay exactly as without the hook."""
import copy
import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import EMAHook, Hook
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.registry import HOOKS as ROOT_HOOKS

from seg_data import make_dataset
from tool_loader import (ROOT, TINY_UNET_LINES, cfg_options, free_port, run_train_tool,
                         tiny_unet_model_line)
from tasks.engine import build_runner, load_from_local, prepare_test_config
from tasks.engine.precise_bn import (BNMomentumHook, PreciseBNHook, RecomputeBNHook,
                                     WindowBNHook, stochastic_layers, update_bn_stats)
from effnet_backbones.layers import DropPath

QUICK = ROOT / 'configs' / 'unet_effb0_quick.py'
STEM = 'net.encoder.backbone.stem'


# ------------------------------------------------------------------ update_bn_stats, exactly

class Frozen(nn.Module):
    """Keeps its BatchNorm in eval mode when trained, as ``norm_eval`` backbones do."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(5)

    def train(self, mode=True):
        super().train(mode)
        self.bn.eval()
        return self

    def forward(self, x):
        return self.bn(x)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4, momentum=0.03)
        self.conv2 = nn.Conv2d(4, 5, 1)
        self.bn2 = nn.BatchNorm2d(5)
        self.frozen = Frozen()
        self.unused = nn.BatchNorm2d(7)

    def forward(self, x):
        return self.frozen(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def _batches(count, size=4):
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(size, 3, 8, 8, generator=generator) * 2 + 3 for _ in range(count)]


def _perturbed(model):
    for bn in (model.bn1, model.bn2, model.frozen.bn, model.unused):
        bn.running_mean.fill_(100.0)
        bn.running_var.fill_(50.0)
        bn.num_batches_tracked.fill_(7)
    return model


def test_update_bn_stats_gives_the_average_of_the_batch_statistics():
    model = _perturbed(Tiny())
    batches = _batches(6)
    with torch.no_grad():
        features = [model.conv1(x) for x in batches[:5]]
    done = update_bn_stats(model, batches, num_iters=5, forward=lambda m, x: m(x))
    assert done == dict(layers=2, batches=5, samples=20)  # bn1, bn2: not frozen, not unused
    # equal batches: the mean of the batch means is the mean over the five batches (not the 6th)
    torch.testing.assert_close(model.bn1.running_mean,
                               torch.cat(features).mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.bn1.running_var,
                               torch.stack([f.var((0, 2, 3), unbiased=True) for f in features]).mean(0),
                               rtol=1e-5, atol=1e-5)
    assert (model.bn2.running_mean - 100).abs().min() > 1  # recomputed too
    for bn in (model.frozen.bn, model.unused):  # eval-mode (norm_eval) and never-reached layers
        assert torch.all(bn.running_mean == 100) and torch.all(bn.running_var == 50)
    assert model.bn1.momentum == 0.03 and model.bn2.momentum == 0.1  # restored
    assert all(int(bn.num_batches_tracked) == 7 for bn in (model.bn1, model.bn2))


def test_update_bn_stats_restores_each_modules_mode():
    model = Tiny().eval()
    update_bn_stats(model, _batches(2), num_iters=2, forward=lambda m, x: m(x))
    assert not any(module.training for module in model.modules())
    model.train()
    model.bn2.eval()
    update_bn_stats(model, _batches(2), num_iters=2, forward=lambda m, x: m(x))
    assert not model.bn2.training and not model.frozen.bn.training
    assert model.training and model.bn1.training and model.frozen.training


def test_update_bn_stats_without_batches_or_batchnorm_changes_nothing():
    model = _perturbed(Tiny())
    assert update_bn_stats(model, [], num_iters=4, forward=lambda m, x: m(x))['batches'] == 0
    assert torch.all(model.bn1.running_mean == 100) and model.bn1.momentum == 0.03
    plain = nn.Sequential(nn.Conv2d(3, 3, 1), nn.GroupNorm(1, 3))
    assert update_bn_stats(plain, _batches(2), num_iters=2, forward=lambda m, x: m(x))['layers'] == 0


class Thinned(nn.Module):
    """A drop-path residual and dropout in front of a BatchNorm: in train mode its input is the
    thinned network's, in eval mode every path is kept."""

    def __init__(self):
        super().__init__()
        self.branch = nn.Conv2d(3, 3, 1)
        self.drop_path = DropPath(0.5)
        self.dropout = nn.Dropout(0.3)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.dropout(x + self.drop_path(self.branch(x))))


def test_update_bn_stats_deterministic_gives_the_statistics_of_the_evaluated_network():
    torch.manual_seed(0)
    model = Thinned().train()
    batches = _batches(4)
    with torch.no_grad():
        kept = [x + model.branch(x) for x in batches]  # all paths, no dropout
    expected_var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in kept]).mean(0)
    assert [type(m).__name__ for m in stochastic_layers(model)] == ['DropPath', 'Dropout']
    update_bn_stats(model, batches, num_iters=4, forward=lambda m, x: m(x), deterministic=True)
    torch.testing.assert_close(model.bn.running_mean, torch.cat(kept).mean((0, 2, 3)),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.bn.running_var, expected_var, rtol=1e-5, atol=1e-5)
    assert model.drop_path.training and model.dropout.training  # modes restored
    update_bn_stats(model, batches, num_iters=4, forward=lambda m, x: m(x))  # thinned: inflated
    assert (model.bn.running_var / expected_var).min() > 1.2


class TensorModel(BaseModel):
    """A BaseModel: the default forward goes through its data preprocessor, mode='tensor'."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)
        self.modes = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.modes.append(mode)
        return self.bn(self.conv(inputs))


def test_update_bn_stats_default_forward_is_preprocessor_then_tensor_mode():
    model = TensorModel()
    batches = [dict(inputs=x) for x in _batches(3)]
    update_bn_stats(model, batches, num_iters=3)
    assert model.modes == ['tensor'] * 3
    with torch.no_grad():
        expected = torch.cat([model.conv(b['inputs']) for b in batches]).mean((0, 2, 3))
    torch.testing.assert_close(model.bn.running_mean, expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ hook guards, fake runners

class FakeRunner(SimpleNamespace):
    """What the hooks read of a Runner; the train data must not be touched."""

    @property
    def train_dataloader(self):
        raise AssertionError('the train data must not be touched')


def _fake_runner(model, hooks=(), iteration=0, max_iters=100):
    return FakeRunner(model=model, hooks=list(hooks), iter=iteration, max_iters=max_iters,
                      logger=MMLogger.get_instance('test_precise_bn'),
                      message_hub=MessageHub.get_instance('test_precise_bn'))


def test_precise_bn_runs_only_in_training_and_only_with_batchnorm():
    hook = PreciseBNHook(num_iters=2)
    model = _perturbed(Tiny())
    runner = _fake_runner(model, [hook])
    hook.before_val_epoch(runner)  # runner.val() / test: not from a training run
    hook.before_save_checkpoint(runner, dict(state_dict={}))
    assert torch.all(model.bn1.running_mean == 100)
    plain = _fake_runner(nn.Conv2d(3, 3, 1), [hook])
    hook.before_train(plain)
    hook.before_val_epoch(plain)  # no BatchNorm: nothing to do, the data is not touched


def test_precise_bn_must_run_after_ema_hook():
    ema, hook = EMAHook(), PreciseBNHook()
    with pytest.raises(ValueError, match='after EMAHook'):
        hook.before_run(_fake_runner(Tiny(), [hook, ema]))
    hook.before_run(_fake_runner(Tiny(), [ema, hook]))
    assert PreciseBNHook.priority == 'BELOW_NORMAL' and EMAHook.priority == 'NORMAL'
    with pytest.raises(ValueError):
        PreciseBNHook(num_iters=0)


# ------------------------------------------------------------------ BN momentum schedule

def test_bn_momentum_decays_linearly_to_each_layers_own():
    model = Tiny()
    model.bn2.momentum = None  # cumulative average: left alone
    hook = BNMomentumHook(start=0.5, iters=0.25)  # 25 of 100 iterations
    runner = _fake_runner(model, [hook], max_iters=100)
    hook.before_train(runner)
    seen = []
    for iteration in (0, 10, 25, 60):
        runner.iter = iteration
        hook.before_train_iter(runner, iteration)
        seen.append(model.bn1.momentum)
    # bn1's own momentum is 0.03: 0.5 -> 0.03 over 25 iterations, then 0.03
    assert seen == pytest.approx([0.5, 0.5 + (0.03 - 0.5) * 10 / 25, 0.03, 0.03])
    assert model.bn2.momentum is None and model.frozen.bn.momentum == 0.1
    assert runner.message_hub.get_scalar('train/bn_momentum').current() == pytest.approx(0.03)
    hook.after_train(runner)
    assert model.bn1.momentum == 0.03 and model.frozen.bn.momentum == 0.1


def test_bn_momentum_with_a_fixed_end_and_iteration_count():
    model = Tiny()
    hook = BNMomentumHook(start=0.9, end=0.01, iters=4)
    runner = _fake_runner(model, [hook], max_iters=1000)
    hook.before_train(runner)
    runner.iter = 2
    hook.before_train_iter(runner, 2)
    assert model.bn1.momentum == pytest.approx(0.455) and model.unused.momentum == pytest.approx(0.455)
    for bad in (dict(start=0.0), dict(end=1.5), dict(iters=0), dict(iters=1.0), dict(iters=True)):
        with pytest.raises(ValueError):
            BNMomentumHook(**bad)


# ------------------------------------------------------------------ inside real training runs

def _rng_digest():
    digest = hashlib.sha1(repr(random.getstate()).encode())
    digest.update(np.random.get_state()[1].tobytes())
    digest.update(torch.get_rng_state().numpy().tobytes())
    return digest.hexdigest()


class PreciseBNProbe(Hook):
    """Records the random state and the evaluated model's stem at validation and checkpoints."""

    def __init__(self, tag):
        self.tag = tag
        self.records = []

    def _record(self, runner, event):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        stem = model.net.encoder.backbone.stem
        self.records.append(dict(event=event, rng=_rng_digest(),
                                 weight=stem.conv.weight.detach().clone(),
                                 mean=stem.norm.running_mean.clone()))

    def before_val_epoch(self, runner):
        self._record(runner, 'val')

    def before_test_epoch(self, runner):
        self._record(runner, 'test')

    def before_save_checkpoint(self, runner, checkpoint):
        self._record(runner, 'checkpoint')


class CopiedCheckpointState(Hook):
    """On a GPU ``weights_to_cpu`` copies the state dict a checkpoint saves; on a CPU it shares the
    model's tensors. Copy them, as on a GPU, before PreciseBN (after EMAHook's swap)."""

    def before_save_checkpoint(self, runner, checkpoint):
        state = checkpoint['state_dict']
        for key in state:
            state[key] = state[key].clone()


class BatchStatsProbe(Hook):
    """Records the per-channel mean of the stem BN's input in every training forward pass."""

    def __init__(self):
        self.means = []

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        norm = model.get_submodule(f'{STEM}.norm')
        norm.register_forward_hook(lambda module, args, out: self.means.append(
            args[0].detach().mean((0, 2, 3))) if module.training else None)


ROOT_HOOKS.register_module(name='PreciseBNProbe', module=PreciseBNProbe, force=True)
ROOT_HOOKS.register_module(name='BatchStatsProbe', module=BatchStatsProbe, force=True)
ROOT_HOOKS.register_module(name='CopiedCheckpointState', module=CopiedCheckpointState, force=True)

# deterministic data (crops the size of the images, no augmentation), drop path on: a hook that
# consumed the global random state would change the drop-path masks training draws after it
CONFIG = """
_base_ = ['{quick}', '{root}/configs/_base_/ema.py', '{root}/configs/_base_/precise_bn.py']
""" + tiny_unet_model_line(0.2).replace('{', '{{').replace('}', '}}') + \
    TINY_UNET_LINES.replace('{', '{{').replace('}', '}}') + """default_hooks = dict(logger=dict(interval=1))
# EMAHook and the first probe are NORMAL (50), PreciseBN BELOW_NORMAL (60)
_probes = [dict(type='PreciseBNProbe', tag='before', priority='ABOVE_NORMAL'),
           dict(type='CopiedCheckpointState', priority=55),
           dict(type='PreciseBNProbe', tag='after', priority='LOW')]
custom_hooks = [*_base_.custom_hooks, *_probes, {extra}]
{more}
"""
RUNS = {
    # 4 train images, batches of 2, num_iters 4: every image twice in the statistics
    'precise': ("dict(_base_.precise_bn_hook, num_iters=4)", ''),
    'plain': ('', ''),
    # events after iterations 2 (validation), 3 (checkpoint), 4 (both): windows of iterations
    # 1-2, 3 (cut at the event before) and 4
    'window': ("dict(type='effnet_backbones.WindowBNHook', window=2), dict(type='BatchStatsProbe')",
               ''),
    # EMA averaging every step so far (gamma=1), a high lr: EMA weights far from the raw ones
    'ema': ("dict(_base_.ema_hook, gamma=1), dict(_base_.precise_bn_hook, num_iters=4), "
            "_base_.bn_momentum_hook",
            "optim_wrapper = dict(optimizer=dict(lr=1e-2))\n"
            "param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, end=4)]"),
}
ITERS = 4
# validation after iterations 2 and 4, checkpoints after 3 and 4: a validation with no checkpoint
# before it (2), a checkpoint with no validation (3), both (4)
INTERVALS = {'default_hooks.checkpoint.interval': 3, 'train_cfg.val_interval': 2}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('precise_bn')
    data = make_dataset(root / 'data', train_sizes=((64, 64),) * 4, val_sizes=((64, 64),))
    done = {}
    for name, (extra, more) in RUNS.items():
        config = root / f'precise_bn_{name}.py'
        config.write_text(CONFIG.format(quick=QUICK, root=ROOT, extra=extra, more=more))
        work = root / name
        runner = run_train_tool(config, data, work, ITERS,
                                *cfg_options(INTERVALS, f'precise_bn_{name}'))
        done[name] = SimpleNamespace(runner=runner, work=work, probes={
            hook.tag: hook for hook in runner.hooks if isinstance(hook, PreciseBNProbe)})
    return done


def _stem_input_mean(runner, state):
    """Per-channel mean of the stem BN's input over the 4 train images, with ``state``'s weights."""
    model = copy.deepcopy(runner.model)
    model.load_state_dict(state)
    model.eval()
    dataset = runner.train_dataloader.dataset
    batch = runner.train_dataloader.collate_fn([dataset[index] for index in range(len(dataset))])
    captured = []
    norm = model.get_submodule(f'{STEM}.norm')
    handle = norm.register_forward_hook(lambda module, args, out: captured.append(args[0]))
    with torch.no_grad():
        model(**model.data_preprocessor(batch, True), mode='tensor')
    handle.remove()
    return captured[0].mean((0, 2, 3))


def _log(run):
    return '\n'.join(path.read_text() for path in run.work.glob('*/*.log'))


def test_checkpoints_hold_the_statistics_of_the_train_data(runs):
    for name, iteration in (('precise', 3), ('precise', 4), ('ema', 3), ('ema', 4)):
        run = runs[name]
        state = load_from_local(str(run.work / f'iter_{iteration}.pth'))['state_dict']
        expected = _stem_input_mean(run.runner, state)
        torch.testing.assert_close(state[f'{STEM}.norm.running_mean'], expected,
                                   rtol=1e-4, atol=1e-5, msg=f'{name} iteration {iteration}')
    plain = runs['plain']
    state = load_from_local(str(plain.work / f'iter_{ITERS}.pth'))['state_dict']
    lagging = state[f'{STEM}.norm.running_mean']  # momentum 0.1 over 4 steps from zero
    assert (lagging - _stem_input_mean(plain.runner, state)).abs().max() > 1e-2


def test_validation_sees_the_statistics_of_the_weights_it_evaluates(runs):
    for name in ('precise', 'ema'):
        run = runs[name]
        vals = [record for record in run.probes['after'].records if record['event'] == 'val']
        assert len(vals) == 2  # iterations 2 and 4
        model = run.runner.model
        for record in vals:
            state = {key: value.clone() for key, value in model.state_dict().items()}
            state[f'{STEM}.conv.weight'] = record['weight']
            expected = _stem_input_mean(run.runner, state)
            torch.testing.assert_close(record['mean'], expected, rtol=1e-4, atol=1e-5, msg=name)


def test_with_ema_the_ema_weights_are_evaluated_and_saved(runs):
    run = runs['ema']
    checkpoint = load_from_local(str(run.work / f'iter_{ITERS}.pth'))
    saved = checkpoint['state_dict'][f'{STEM}.conv.weight']
    raw = checkpoint['ema_state_dict'][f'module.{STEM}.conv.weight']  # EMAHook swaps the two
    assert (saved - raw).abs().max() > 1e-3  # the EMA weights really differ from the raw ones
    last_val = [record for record in run.probes['after'].records if record['event'] == 'val'][-1]
    torch.testing.assert_close(last_val['weight'], saved)  # validated what was saved
    # the BN momentum schedule ran: 0.5 falling to 0.1 over the first quarter (1 iteration)
    momenta = run.runner.message_hub.get_scalar('train/bn_momentum').data[0]
    assert momenta[0] == pytest.approx(0.5) and momenta[-1] == pytest.approx(0.1)


@pytest.mark.parametrize('name', ['precise', 'window'])
def test_training_is_exactly_as_without_the_hook(runs, name):
    hooked = load_from_local(str(runs[name].work / f'iter_{ITERS}.pth'))['state_dict']
    plain = load_from_local(str(runs['plain'].work / f'iter_{ITERS}.pth'))['state_dict']
    names = {name for name, _ in runs['plain'].runner.model.named_parameters()}
    assert names and names <= plain.keys()
    for key in names:  # same batches, same drop-path masks: the same weights
        torch.testing.assert_close(hooked[key], plain[key], rtol=0, atol=0, msg=key)
    for key, value in plain.items():
        if key.endswith('num_batches_tracked'):
            assert torch.equal(hooked[key], value), key
    if name == 'window':
        return
    for run in (runs['precise'], runs['ema']):  # the random state is as it was before the hook
        before, after = run.probes['before'].records, run.probes['after'].records
        assert [r['event'] for r in before] == [r['event'] for r in after]
        assert [r['rng'] for r in before] == [r['rng'] for r in after]


def test_window_statistics_average_the_last_training_batches(runs):
    run = runs['window']
    means = run.runner.hooks[[type(h).__name__ for h in run.runner.hooks].index(
        'BatchStatsProbe')].means
    assert len(means) == ITERS  # one training forward per iteration, none added by the hook
    expected = {2: torch.stack(means[0:2]).mean(0), 3: means[2], 4: means[3]}
    vals = [record for record in run.probes['after'].records if record['event'] == 'val']
    assert len(vals) == 2
    for iteration, record in zip((2, 4), vals):
        torch.testing.assert_close(record['mean'], expected[iteration], rtol=1e-5, atol=1e-6)
    for iteration in (3, 4):
        state = load_from_local(str(run.work / f'iter_{iteration}.pth'))['state_dict']
        torch.testing.assert_close(state[f'{STEM}.norm.running_mean'], expected[iteration],
                                   rtol=1e-5, atol=1e-6, msg=f'iteration {iteration}')
    # the layers leave each window with their momentum back
    norm = run.runner.model.get_submodule(f'{STEM}.norm')
    assert norm.momentum == 0.1


def test_window_statistics_rules():
    with pytest.raises(ValueError, match='window must be a positive int'):
        WindowBNHook(window=0)
    hook = WindowBNHook(window=2)
    runner = SimpleNamespace(hooks=[EMAHook(), hook])
    with pytest.raises(ValueError, match='use effnet_backbones.PreciseBNHook with EMAHook'):
        hook.before_run(runner)
    hook._events = [2, 3, 10]  # the window of each event, cut at the event before
    assert [hook._window_start(done) for done in (0, 1, 2, 3, 9, 10)] == [0, 0, 2, 8, 8, None]
    shrinking = WindowBNHook(window=25, max_fraction=0.2)
    shrinking._events = [25, 50, 125, 200]
    assert [shrinking._window_start(done) for done in (0, 30, 100, 150)] == [20, 40, 100, 175]
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match='max_fraction'):
            WindowBNHook(max_fraction=bad)


def test_a_layer_that_joins_an_open_window_averages_over_the_rest_of_it():
    """A model grown in place mid-window (ProgressiveGrowthHook) brings new BatchNorms: they
    join the open window, and every layer leaves it with its own momentum."""
    torch.manual_seed(0)
    model = Tiny().train()
    hook = WindowBNHook(window=4)
    hook._events = [6]  # the window is iterations 2 ... 5
    inputs = {}

    def record(module, args):
        inputs.setdefault(module, []).append(args[0].detach().clone())

    model.bn1.register_forward_pre_hook(record)
    runner = SimpleNamespace(model=model, iter=0)
    for iteration, batch in enumerate(_batches(6)):
        runner.iter = iteration
        if iteration == 4:
            model.bn2 = nn.BatchNorm2d(5, momentum=0.2)
            model.bn2.register_forward_pre_hook(record)
        hook.before_train_iter(runner, iteration)
        model(batch)
        hook.after_train_iter(runner, iteration)
    for bn, seen in ((model.bn1, inputs[model.bn1][2:]), (model.bn2, inputs[model.bn2])):
        assert len(seen) == (4 if bn is model.bn1 else 2)
        means = torch.stack([x.mean((0, 2, 3)) for x in seen])
        variances = torch.stack([x.transpose(0, 1).flatten(1).var(1) for x in seen])
        torch.testing.assert_close(bn.running_mean, means.mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var, variances.mean(0), rtol=1e-5, atol=1e-6)
    assert (model.bn1.momentum, model.bn2.momentum) == (0.03, 0.2)
    assert int(model.bn1.num_batches_tracked) == 6 and int(model.bn2.num_batches_tracked) == 2
    assert not hook._open


def test_statistics_are_computed_once_per_iteration(runs):
    for name in ('precise', 'ema'):
        lines = [line for line in _log(runs[name]).splitlines() if 'PreciseBN: recomputed' in line]
        # after iterations 2 (validation, best checkpoint), 3 (checkpoint), 4 (all three)
        assert len(lines) == 3, lines
        assert 'over 4 training batches (8 samples)' in lines[0]
        assert Path(runs[name].work / f'iter_{ITERS}.pth').is_file()


def test_training_curves_give_the_precise_bn_seconds_apart(runs):
    import json
    curves = json.loads((runs['precise'].work / 'training_curves.json').read_text())
    spent = [evaluation['precise_bn_seconds'] for evaluation in curves['evaluations']]
    assert len(spent) == 2 and 0 < spent[0] <= spent[1]  # cumulative, validations 2 and 4
    assert spent[1] <= curves['evaluations'][1]['seconds']  # a part of the training seconds
    timed = [float(line.rsplit(' in ', 1)[1].split(' s')[0]) for line in _log(runs['precise'])
             .splitlines() if 'PreciseBN: recomputed' in line]
    # the validation after iteration 4 comes after the checkpoint's recomputation (iteration 3)
    assert spent[1] == pytest.approx(sum(timed), abs=0.05 * len(timed))
    plain = json.loads((runs['plain'].work / 'training_curves.json').read_text())
    assert all('precise_bn_seconds' not in e for e in plain['evaluations'])


def test_resuming_with_ema_and_precise_bn(runs, tmp_path):
    run = runs['ema']
    config = next(run.work.parent.glob('precise_bn_ema.py'))
    runner = run_train_tool(config, run.work.parent / 'data', tmp_path / 'resumed', ITERS,
                            '--resume', str(run.work / 'iter_3.pth'),
                            *cfg_options(INTERVALS, 'precise_bn_resumed'))
    assert runner.iter == ITERS
    state = load_from_local(str(tmp_path / 'resumed' / f'iter_{ITERS}.pth'))['state_dict']
    torch.testing.assert_close(state[f'{STEM}.norm.running_mean'],
                               _stem_input_mean(runner, state), rtol=1e-4, atol=1e-5)


def _recompute_bn_test(run, tmp_path, name, **options):
    """``tools/test.py``'s config for ``run``'s last checkpoint with ``options``, run; returns
    the runner."""
    config = next(run.work.parent.glob(f'precise_bn_{run.work.name}.py'))
    cfg = prepare_test_config(str(config), str(run.work / f'iter_{ITERS}.pth'),
                              work_dir=str(tmp_path / name), data_root=str(run.work.parent / 'data'),
                              cfg_options={'experiment_name': name}, **options)
    runner = build_runner(cfg)
    runner.test()
    return runner


def test_recompute_bn_gives_a_checkpoint_the_statistics_of_its_weights(runs, tmp_path):
    plain = runs['plain']  # trained without PreciseBN: its saved statistics lag the weights
    checkpoint = plain.work / f'iter_{ITERS}.pth'
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    state = load_from_local(str(checkpoint))['state_dict']
    expected = _stem_input_mean(plain.runner, state)
    runner = _recompute_bn_test(plain, tmp_path, 'recompute_bn', recompute_bn=4)
    probes = {hook.tag: hook for hook in runner.hooks if isinstance(hook, PreciseBNProbe)}
    before, = probes['before'].records  # ABOVE_NORMAL: before the recomputation
    after, = probes['after'].records  # LOW: what the test epoch evaluates
    assert before['event'] == after['event'] == 'test'
    torch.testing.assert_close(before['mean'], state[f'{STEM}.norm.running_mean'])
    # 4 batches of 2 from 4 images: every image twice, as PreciseBN computes it in training
    torch.testing.assert_close(after['mean'], expected, rtol=1e-4, atol=1e-5)
    assert before['rng'] == after['rng']  # the random state is restored
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest  # the file is untouched
    log = '\n'.join(path.read_text() for path in (tmp_path / 'recompute_bn').glob('*/*.log'))
    assert 'over 4 training batches (8 samples, seed 0)' in log

    # without --recompute-bn the saved statistics are evaluated
    runner = _recompute_bn_test(plain, tmp_path, 'saved_bn')
    after, = [hook for hook in runner.hooks if getattr(hook, 'tag', None) == 'after'][0].records
    torch.testing.assert_close(after['mean'], state[f'{STEM}.norm.running_mean'])


def test_recompute_bn_rejects_a_count_that_is_not_positive(runs, tmp_path):
    config = next(runs['plain'].work.parent.glob('precise_bn_plain.py'))
    checkpoint = str(runs['plain'].work / f'iter_{ITERS}.pth')
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match='--recompute-bn'):
            prepare_test_config(str(config), checkpoint, work_dir=str(tmp_path), recompute_bn=bad)
    for bad in (dict(num_iters=0), dict(num_iters='4'), dict(seed=1.5), dict(deterministic=1)):
        with pytest.raises(ValueError):
            RecomputeBNHook(**bad)
    with pytest.raises(ValueError, match='deterministic must be True or False'):
        PreciseBNHook(deterministic='yes')


def test_recompute_bn_batches_are_the_cpu_profiles_training_crops(tmp_path):
    config = tmp_path / 'profiled.py'
    config.write_text(f"_base_ = ['{QUICK}']\n"
                      "cpu_profile = dict(max_iters=4, options={'train_dataloader.batch_size': 3, "
                      "'train_dataloader.dataset.crop_size': 48, 'train_cfg.val_interval': 2})\n")
    checkpoint = tmp_path / 'weights.pth'
    torch.save({'state_dict': {}, 'meta': {}}, checkpoint)
    cfg = prepare_test_config(str(config), str(checkpoint), work_dir=str(tmp_path / 'work'),
                              recompute_bn=7, bn_seed=3, bn_deterministic=True)
    if not torch.cuda.is_available():
        assert cfg.train_dataloader.batch_size == 3
        assert cfg.train_dataloader.dataset.crop_size == 48
    assert cfg.custom_hooks[-1] == dict(type='effnet_backbones.RecomputeBNHook', num_iters=7, seed=3,
                                        deterministic=True)
    off = prepare_test_config(str(config), str(checkpoint), work_dir=str(tmp_path / 'work'),
                              recompute_bn=7, cfg_options={'cpu_profile': None})
    assert off.train_dataloader.batch_size != 3


# ------------------------------------------------------------------ distributed

DDP_WORKER = """
import importlib.util
import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from torch.utils.data import DataLoader, Dataset

# the module alone (it needs only torch and MMEngine): the package would import the library too
spec = importlib.util.spec_from_file_location('precise_bn', 'tasks/engine/precise_bn.py')
precise_bn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(precise_bn)


class TensorModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.bn(self.conv(inputs))


class Samples(Dataset):
    images = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 + 1

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return dict(inputs=self.images[index])


dist.init_process_group('gloo')
torch.manual_seed(0)
model = TensorModel()
runner = SimpleNamespace(model=model, hooks=[], iter=0, seed=0, logger=MMLogger.get_instance('ddp'),
                         train_dataloader=DataLoader(Samples(), batch_size=2))
hook = precise_bn.PreciseBNHook(num_iters=4)  # 4 samples per rank in batches of 2: each one twice
hook.before_train(runner)
hook.before_val_epoch(runner)
means = [torch.zeros(4) for _ in range(2)]
dist.all_gather(means, model.bn.running_mean)
if dist.get_rank() == 0:
    with torch.no_grad():
        expected = model.conv(Samples.images).mean((0, 2, 3))
    torch.save(dict(means=means, expected=expected), sys.argv[1])
dist.destroy_process_group()
"""


def test_distributed_ranks_average_their_statistics(tmp_path):
    script, out = tmp_path / 'ddp_precise_bn.py', tmp_path / 'means.pt'
    script.write_text(DDP_WORKER)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                             f'--master_port={free_port()}', str(script), str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    saved = torch.load(out)
    # each rank saw its own half of the data; both end with the mean over all of it
    for mean in saved['means']:
        torch.testing.assert_close(mean, saved['expected'], rtol=1e-5, atol=1e-5)
