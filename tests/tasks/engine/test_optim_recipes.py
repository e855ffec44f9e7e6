"""Optimiser recipes: which tensors of a real U-Net get weight decay under no_decay_paramwise_cfg,
the TF-style RMSprop schedule, and the EMA / PreciseBN switches composed onto a shipped recipe."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import HOOKS as ROOT_HOOKS
from segmentation_models_pytorch.base.modules import SCSEModule
from timm.optim import RMSpropTF
from torch.nn.modules.batchnorm import _BatchNorm

import tasks.engine  # noqa: F401  (registers the hooks and effnet_backbones.RMSpropTF)
import tasks.segmentation  # noqa: F401
from effnet_backbones.layers import attention
from tasks.engine.config_check import check_config
from tasks.engine.optim import fastest_implementation, no_decay_paramwise_cfg
from tasks.engine.precise_bn import PreciseBNHook, WindowBNHook
from tasks.segmentation.model import SegmentationModel
from tool_loader import ROOT

SCHEDULES = ROOT / 'configs' / '_base_' / 'schedules'
WEIGHT_DECAY = 1e-4
#: every attention module a parameter may sit in: SE in the blocks, scSE (and its halves, where
#: the library has them) on the taps, smp's scSE in the decoder
GATES = tuple(getattr(attention, name) for name in ('SqueezeExcite', 'SCSE', 'ChannelSE', 'SpatialSE')
              if hasattr(attention, name)) + (SCSEModule,)
NORMS = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


@pytest.fixture(scope='module')
def model():
    # scSE on every encoder tap and smp's scSE in the decoder: every kind of gate there is
    return SegmentationModel(arch='b0', in_channels=1, num_classes=3,
                             encoder_options=dict(scse=True),
                             decoder_options=dict(decoder_channels=(32, 16, 16, 16, 16),
                                                  decoder_attention_type='scse'))


def _kind(model, name):
    """What a parameter is, from the modules it sits in (not from its name)."""
    path, leaf = name.rsplit('.', 1)
    owners = [model.get_submodule('.'.join(path.split('.')[:depth]))
              for depth in range(1, path.count('.') + 2)]
    if isinstance(owners[-1], NORMS):
        return 'norm'
    if any(isinstance(owner, GATES) for owner in owners):
        return 'gate bias' if leaf == 'bias' else 'gate weight'
    if leaf == 'bias':
        return 'bias'
    assert isinstance(owners[-1], (nn.Conv2d, nn.Linear)), name
    return 'weight'


def _decay_of(optimizer):
    """Weight decay per parameter; each parameter is in exactly one group."""
    decay = {}
    for group in optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in decay
            decay[id(param)] = group['weight_decay']
    return decay


def test_no_decay_for_norms_biases_and_gates(model):
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', paramwise_cfg=no_decay_paramwise_cfg(),
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=WEIGHT_DECAY)))
    decay = _decay_of(wrapper.optimizer)
    params = dict(model.named_parameters())
    assert set(decay) == {id(param) for param in params.values()}  # none left out
    counts = {}
    for name, param in params.items():
        kind = _kind(model, name)
        counts[kind] = counts.get(kind, 0) + 1
        expected = WEIGHT_DECAY if kind == 'weight' else 0.0
        assert decay[id(param)] == pytest.approx(expected), f'{name} ({kind})'
    # b0: 16 MBConv blocks, each with an SE (reduce + expand); 5 encoder taps, 5 decoder blocks
    # with 2 scSE each, every scSE with 3 convs; every norm has a weight and a bias
    assert counts['gate weight'] == 16 * 2 + 5 * 3 + 5 * 2 * 3
    assert counts['gate bias'] == counts['gate weight']
    norms = [module for module in model.modules() if isinstance(module, NORMS)]
    assert counts['norm'] == 2 * len(norms) > 0
    convs = [module for module in model.modules()
             if isinstance(module, nn.Conv2d) and not isinstance(module, GATES)]
    gate_convs = sum(isinstance(module, nn.Conv2d) for gate in model.modules()
                     if isinstance(gate, GATES) for module in gate.modules())
    assert counts['weight'] == len(convs) - gate_convs > 0
    assert counts['bias'] >= 1  # the segmentation head's
    assert sum(counts.values()) == len(params)


def test_plain_adamw_decays_everything(model):
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=WEIGHT_DECAY)))
    assert set(_decay_of(wrapper.optimizer).values()) == {WEIGHT_DECAY}


def test_the_nodecay_schedule_is_adamw_with_that_paramwise_cfg():
    nodecay = Config.fromfile(str(SCHEDULES / 'adamw_cosine_4k_nodecay.py'))
    plain = Config.fromfile(str(SCHEDULES / 'adamw_cosine_4k.py'))
    assert nodecay.optim_wrapper.to_dict().pop('paramwise_cfg') == no_decay_paramwise_cfg()
    assert {k: v for k, v in nodecay.optim_wrapper.items() if k != 'paramwise_cfg'} == \
        plain.optim_wrapper.to_dict()
    assert nodecay.param_scheduler == plain.param_scheduler
    assert nodecay.train_cfg == plain.train_cfg


def test_no_decay_paramwise_cfg_takes_extra_keys():
    cfg = no_decay_paramwise_cfg(custom_keys={'head': dict(lr_mult=10.0)}, bypass_duplicate=True)
    assert cfg['custom_keys']['head'] == dict(lr_mult=10.0) and '.se.' in cfg['custom_keys']
    assert cfg['bypass_duplicate'] is True and no_decay_paramwise_cfg()['norm_decay_mult'] == 0.0


def test_rmsprop_tf_schedule_builds_timms_rmsproptf():
    cfg = Config.fromfile(str(SCHEDULES / 'rmsprop_tf_cosine_4k.py'))
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper.to_dict())
    optimizer = wrapper.optimizer
    assert isinstance(optimizer, RMSpropTF)
    group = optimizer.param_groups[0]
    assert (group['alpha'], group['eps'], group['momentum']) == (0.9, 1e-3, 0.9)
    assert group['lr'] == pytest.approx(0.016 * 8 / 256)
    decay = _decay_of(optimizer)
    assert decay[id(model[1].weight)] == 0.0 and decay[id(model[0].weight)] == 1e-5
    before = model[0].weight.detach().clone()
    wrapper.update_params(model(torch.randn(2, 1, 8, 8)).square().mean())
    assert not torch.equal(before, model[0].weight)


def _composed(tmp_path, *snippets, hooks):
    config = tmp_path / 'composed.py'
    bases = [str(ROOT / 'configs' / 'unet_effb0_quick.py')] + \
        [str(ROOT / 'configs' / '_base_' / snippet) for snippet in snippets]
    config.write_text(f'_base_ = {bases!r}\ncustom_hooks = [*_base_.custom_hooks, {hooks}]\n')
    return Config.fromfile(str(config))


def test_ema_and_precise_bn_compose_onto_a_recipe(tmp_path):
    cfg = _composed(tmp_path, 'ema.py', 'precise_bn.py',
                    hooks='_base_.ema_hook, _base_.precise_bn_hook')
    types = [hook['type'] for hook in cfg.custom_hooks]
    # the recipe's own hooks are kept (lists replace lists when configs merge)
    assert types == ['effnet_backbones.NanLossGuardHook', 'effnet_backbones.TrainingCurvesHook',
                     'effnet_backbones.TrainingFlopsHook', 'EMAHook', 'effnet_backbones.PreciseBNHook']
    check_config(cfg)  # no key the hooks do not take
    built = [ROOT_HOOKS.build(hook.to_dict()) for hook in cfg.custom_hooks]
    assert isinstance(built[-1], PreciseBNHook) and built[-1].num_iters == 20
    ema = built[3]
    assert ema.ema_cfg == dict(type='MomentumAnnealingEMA', momentum=0.0002, gamma=10,
                               update_buffers=False)
    # the quick recipe has none of them
    quick = Config.fromfile(str(ROOT / 'configs' / 'unet_effb0_quick.py'))
    assert [hook['type'] for hook in quick.custom_hooks] == types[:3]


def test_the_medical_recipe_ships_window_bn_statistics():
    """The BN statistics of the last 25 iterations, at most a tenth of those done (PreciseBN's
    finals in half the time on three datasets: docs/quality.md 1k, 1l; the tenth: docs/ablations.md
    section 12)."""
    recipe = Config.fromfile(str(ROOT / 'configs' / 'unet_effb4_medical.py'))
    check_config(recipe)
    assert [hook['type'] for hook in recipe.custom_hooks] == [
        'effnet_backbones.NanLossGuardHook', 'effnet_backbones.TrainingCurvesHook',
        'effnet_backbones.TrainingFlopsHook', 'effnet_backbones.WindowBNHook']
    hook = ROOT_HOOKS.build(recipe.custom_hooks[-1].to_dict())
    assert isinstance(hook, WindowBNHook) and (hook.window, hook.max_fraction) == (25, 0.1)
    assert recipe.model.encoder_options.shortcut == 'resnet_d'
    assert 'paramwise_cfg' not in recipe.optim_wrapper


def test_ema_on_the_medical_recipe_swaps_the_window_for_precise_bn(tmp_path):
    """configs/_base_/ema.py's example: EMA weights need PreciseBN (the window would average the
    raw weights' batches, and stops the run with EMAHook)."""
    config = tmp_path / 'medical_ema.py'
    config.write_text(f"""_base_ = ['{ROOT}/configs/unet_effb4_medical.py', '{ROOT}/configs/_base_/ema.py']
custom_hooks = [*_base_.custom_hooks[:-1], _base_.ema_hook, _base_.precise_bn_hook]
""")
    cfg = Config.fromfile(str(config))
    check_config(cfg)
    types = [hook['type'] for hook in cfg.custom_hooks]
    assert types[-2:] == ['EMAHook', 'effnet_backbones.PreciseBNHook']
    assert 'effnet_backbones.WindowBNHook' not in types


def test_window_bn_snippet_composes_onto_a_recipe(tmp_path):
    cfg = _composed(tmp_path, 'precise_bn.py', hooks='_base_.window_bn_hook')
    check_config(cfg)
    built = ROOT_HOOKS.build(cfg.custom_hooks[-1].to_dict())
    assert isinstance(built, WindowBNHook) and built.window == 25


def test_switch_keys_are_checked_for_typos(tmp_path):
    cfg = _composed(tmp_path, 'precise_bn.py', hooks='dict(_base_.precise_bn_hook, num_iter=5)')
    with pytest.raises(KeyError, match='num_iter'):
        check_config(cfg)


def test_a_recipe_trains_on_the_rmsprop_schedule(tmp_path):
    """The scoped optimiser type resolves inside a Runner: two iterations of a tiny U-Net."""
    from seg_data import make_dataset
    from tool_loader import cfg_options, run_train_tool
    config = tmp_path / 'rmsprop_recipe.py'
    base = ROOT / 'configs' / '_base_'
    config.write_text(f"""
_base_ = ['{base}/models/unet_effnet.py', '{base}/datasets/medical_folder.py',
          '{base}/schedules/rmsprop_tf_cosine_4k.py', '{base}/default_runtime.py']
model = dict(decoder_options=dict(decoder_channels=[16, 16, 16, 16, 16]))
_loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(batch_size=2, **_loader, dataset=dict(crop_size=64, pipeline=[]))
val_dataloader = dict(**_loader)
test_dataloader = dict(**_loader)
default_hooks = dict(checkpoint=dict(save_last=False), logger=dict(interval=1))
""")
    data = make_dataset(tmp_path / 'data', train_sizes=((64, 64),) * 2, val_sizes=((64, 64),))
    runner = run_train_tool(config, data, tmp_path / 'work', 2,
                            *cfg_options({'train_cfg.val_interval': 10}, 'optim_rmsprop'))
    assert runner.iter == 2 and isinstance(runner.optim_wrapper.optimizer, RMSpropTF)


# ------------------------------------------------------------- FastOptimWrapperConstructor
FAST = 'effnet_backbones.FastOptimWrapperConstructor'
FUSED_ON_CPU = tuple(int(part) for part in torch.__version__.split('.')[:2]) >= (2, 4)


def _small_model(seed=0):
    # no conv bias before a norm: its gradient is rounding noise, which Adam scales up to lr-sized
    # steps, so two implementations would differ there by noise, not by their updates
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.SiLU(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
                         nn.SiLU(), nn.Conv2d(8, 2, 1))


def _train(wrapper, model, steps, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        image = torch.randn(2, 1, 12, 12, generator=generator)
        wrapper.update_params((model(image) - 0.3).square().mean())


def _assert_same_weights(model_a, model_b):
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


def _wrapper_cfg(optimizer, constructor=None, **extra):
    cfg = dict(dict(type='OptimWrapper', optimizer=optimizer, clip_grad=dict(max_norm=0.5)),
               **extra)
    if constructor:
        cfg['constructor'] = constructor
    return cfg


@pytest.mark.parametrize('optimizer, paramwise', [
    (dict(type='AdamW', lr=1e-2, weight_decay=0.05), None),
    (dict(type='AdamW', lr=1e-2, weight_decay=0.05), no_decay_paramwise_cfg()),
    (dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-3), dict(norm_decay_mult=0.0)),
    (dict(type='effnet_backbones.RMSpropTF', lr=1e-3, momentum=0.9, weight_decay=1e-3),
     dict(norm_decay_mult=0.0)),
])
def test_fast_constructor_gives_the_default_updates(optimizer, paramwise):
    extra = dict(paramwise_cfg=paramwise) if paramwise else {}
    plain, fast = _small_model(), _small_model()
    plain_wrapper = build_optim_wrapper(plain, _wrapper_cfg(dict(optimizer), **extra))
    fast_wrapper = build_optim_wrapper(fast, _wrapper_cfg(dict(optimizer), FAST, **extra))
    _train(plain_wrapper, plain, 4)
    _train(fast_wrapper, fast, 4)
    _assert_same_weights(plain, fast)
    assert not torch.equal(_small_model()[0].weight, fast[0].weight)  # it did train
    defaults = fast_wrapper.optimizer.defaults
    if optimizer['type'] in ('AdamW', 'SGD'):
        assert defaults['fused'] is True if FUSED_ON_CPU else defaults['foreach'] is True
    else:  # timm's RMSpropTF: multi-tensor where the installed timm has it
        chosen = fastest_implementation(type(fast_wrapper.optimizer), torch.device('cpu'))
        assert chosen.items() <= defaults.items() and 'fused' not in chosen
    assert fast_wrapper.clip_grad_kwargs == dict(max_norm=0.5, foreach=True)
    if paramwise:  # one group per parameter by default, merged per setting here
        assert len(plain_wrapper.optimizer.param_groups) == len(list(plain.parameters()))
        decays = {group['weight_decay'] for group in fast_wrapper.optimizer.param_groups}
        assert len(fast_wrapper.optimizer.param_groups) == len(decays) == 2
        assert _decay_of(fast_wrapper.optimizer) == {
            id(fast_param): plain_decay for fast_param, plain_decay in
            zip(fast.parameters(), _decay_of(plain_wrapper.optimizer).values())}


def test_fast_constructor_keeps_an_implementation_the_config_sets():
    wrapper = build_optim_wrapper(_small_model(), _wrapper_cfg(
        dict(type='AdamW', lr=1e-3, foreach=False), FAST, clip_grad=None))
    assert wrapper.optimizer.defaults['foreach'] is False
    assert wrapper.optimizer.defaults['fused'] is None
    clipped = build_optim_wrapper(_small_model(), _wrapper_cfg(
        dict(type='AdamW', lr=1e-3), FAST, clip_grad=dict(max_norm=1.0, foreach=False)))
    assert clipped.clip_grad_kwargs['foreach'] is False


def test_a_checkpoint_with_one_group_per_parameter_resumes_into_merged_groups():
    paramwise = dict(paramwise_cfg=no_decay_paramwise_cfg())
    optimizer = dict(type='AdamW', lr=1e-2, weight_decay=0.05)
    older = _small_model()
    older_wrapper = build_optim_wrapper(older, _wrapper_cfg(dict(optimizer), **paramwise))
    _train(older_wrapper, older, 3)
    state = copy.deepcopy(older_wrapper.state_dict())  # as from a file: shares no tensor
    resumed = _small_model()
    resumed.load_state_dict(older.state_dict())
    resumed_wrapper = build_optim_wrapper(resumed, _wrapper_cfg(dict(optimizer), FAST,
                                                                **paramwise))
    resumed_wrapper.load_state_dict(state)
    groups = resumed_wrapper.optimizer.param_groups
    assert len(groups) == 2 and all(group['fused' if FUSED_ON_CPU else 'foreach'] for group in groups)
    _train(older_wrapper, older, 3, seed=2)
    _train(resumed_wrapper, resumed, 3, seed=2)
    _assert_same_weights(older, resumed)


def test_the_shipped_schedules_use_the_fast_constructor():
    for name in ('adamw_cosine_4k.py', 'sgd_cosine_180k.py', 'rmsprop_tf_cosine_4k.py',
                 'adamw_cosine_4k_nodecay.py'):
        assert Config.fromfile(str(SCHEDULES / name)).optim_wrapper.constructor == FAST, name
