"""effnet_backbones.layers.norm_act: norm and activation factories, adaptive GroupNorm, frozen BN"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import FrozenBatchNorm2d

from effnet_backbones.layers import (ACT_LAYERS, NORM_LAYERS, is_norm, resolve_act_layer,
                                     resolve_norm_layer)

pytestmark = pytest.mark.usefixtures('one_thread')


def largest_divisor_up_to(channels, limit):
    """The group count GroupNorm should use: the largest divisor of ``channels`` <= ``limit``."""
    return max(g for g in range(1, limit + 1) if channels % g == 0)


# ----------------------------------------------------------------------------- norm names
@pytest.mark.parametrize('name,cls', [
    ('bn', nn.BatchNorm2d), ('BN', nn.BatchNorm2d), ('batchnorm', nn.BatchNorm2d),
    ('bn2d', nn.BatchNorm2d), ('syncbn', nn.SyncBatchNorm), ('SyncBN', nn.SyncBatchNorm),
    ('sync_bn', nn.SyncBatchNorm), ('frozenbn', FrozenBatchNorm2d),
    ('frozen_bn', FrozenBatchNorm2d), ('gn', nn.GroupNorm), ('GN', nn.GroupNorm),
    ('groupnorm', nn.GroupNorm)])
def test_norm_names_and_aliases_build_their_layer_with_eps(name, cls):
    norm = resolve_norm_layer(name, eps=1e-3, momentum=0.01)(32)
    assert type(norm) is cls or (cls is nn.GroupNorm and isinstance(norm, nn.GroupNorm))
    assert norm.eps == 1e-3
    if cls in (nn.BatchNorm2d, nn.SyncBatchNorm):
        assert norm.momentum == 0.01 and norm.num_features == 32
    assert is_norm(norm)


def test_registered_names():
    assert list(NORM_LAYERS) == ['bn', 'syncbn', 'gn', 'frozenbn']
    assert list(ACT_LAYERS) == ['swish', 'relu6', 'hardswish', 'relu']


def test_mmcv_style_dict_overrides_eps_and_momentum_and_drops_requires_grad():
    factory = resolve_norm_layer(dict(type='BN', eps=1e-4, momentum=0.03, requires_grad=True),
                                 eps=1e-3, momentum=0.1)
    norm = factory(16)
    assert type(norm) is nn.BatchNorm2d and (norm.eps, norm.momentum) == (1e-4, 0.03)
    gn = resolve_norm_layer(dict(type='GN', num_groups=16))(64)
    assert gn.num_groups == 16 and gn.eps == 1e-5


@pytest.mark.parametrize('norm_layer', [dict(type='BN', groups=4), dict(type='GN', num_group=4)])
def test_unknown_norm_options_are_named_in_the_error(norm_layer):
    with pytest.raises(ValueError, match=r"invalid options .* for norm_layer '(BN|GN)'"):
        resolve_norm_layer(norm_layer)(16)  # at resolution or, at the latest, when building


def test_a_callable_passes_through_unchanged():
    factory = lambda channels: nn.InstanceNorm2d(channels)  # noqa: E731
    assert resolve_norm_layer(factory) is factory


@pytest.mark.parametrize('norm_layer,error,match', [
    ('ln', ValueError, r"unknown norm_layer 'ln'; valid: bn, syncbn, gn, frozenbn"),
    (dict(type='LN'), ValueError, r"unknown norm_layer 'LN'"),
    (dict(num_groups=4), ValueError, r"needs a \"type\" key, got \{'num_groups': 4\}"),
    (3, TypeError, r'norm_layer must be a name, a dict or a callable, got 3'),
])
def test_bad_norm_layers_name_the_bad_value(norm_layer, error, match):
    with pytest.raises(error, match=match):
        resolve_norm_layer(norm_layer)


# ----------------------------------------------------------------------------- GroupNorm
@pytest.mark.parametrize('channels,num_groups', [(64, 8), (24, 8), (20, 8), (7, 8), (1, 8),
                                                 (36, 16), (144, 32), (1152, 32)])
def test_group_norm_adapts_groups_to_the_channels(channels, num_groups):
    gn = resolve_norm_layer(dict(type='GN', num_groups=num_groups), eps=1e-3)(channels)
    expected_groups = largest_divisor_up_to(channels, num_groups)
    assert gn.num_groups == expected_groups and channels % gn.num_groups == 0
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.normal_()
    x = torch.randn(2, channels, 3, 4) * 3 + 1
    expected = F.group_norm(x, expected_groups, gn.weight, gn.bias, 1e-3)
    torch.testing.assert_close(gn(x), expected)


def test_group_norm_known_group_counts():
    factory = resolve_norm_layer('gn')
    assert [factory(c).num_groups for c in (32, 20, 12, 7, 6, 1)] == [8, 5, 6, 7, 6, 1]


# ----------------------------------------------------------------------------- frozen BN
def test_frozen_bn_is_batch_norm_in_eval_with_the_given_eps_and_never_updates():
    channels = 6
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(1e-3, 1e-2)  # small variances: a wrong eps would show
    frozen = resolve_norm_layer('frozenbn', eps=1e-3, momentum=0.5)(channels)
    state = {k: v for k, v in bn.state_dict().items() if k != 'num_batches_tracked'}
    frozen.load_state_dict(state)
    assert list(frozen.parameters()) == []  # weight, bias and statistics are buffers
    x = torch.randn(2, channels, 5, 5)
    expected = bn.eval()(x)
    frozen.train()  # training mode changes nothing
    torch.testing.assert_close(frozen(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(frozen.running_mean, state['running_mean'], rtol=0, atol=0)
    wrong_eps = resolve_norm_layer('frozenbn', eps=1e-5)(channels)
    wrong_eps.load_state_dict(state)
    assert (wrong_eps(x) - expected).abs().max() > 1e-2


# ----------------------------------------------------------------------------- activations
@pytest.mark.parametrize('name,function', [
    ('swish', F.silu), ('silu', F.silu), ('SiLU', F.silu), ('relu6', F.relu6),
    ('hardswish', F.hardswish), ('hard_swish', F.hardswish), ('relu', F.relu)])
def test_activation_names_and_aliases_compute_their_function(name, function):
    act = resolve_act_layer(name)()
    x = torch.linspace(-8, 8, 101)
    torch.testing.assert_close(act(x), function(x), rtol=0, atol=0)


def test_activation_callable_passes_through_and_bad_names_are_named():
    assert resolve_act_layer(nn.GELU) is nn.GELU
    with pytest.raises(ValueError, match=r"unknown act_layer 'gelu'; valid: swish, relu6, "
                                         r"hardswish, relu"):
        resolve_act_layer('gelu')
    with pytest.raises(TypeError, match='act_layer must be a name or a callable, got 3'):
        resolve_act_layer(3)


# ----------------------------------------------------------------------------- is_norm
@pytest.mark.parametrize('module,expected', [
    (nn.BatchNorm2d(4), True), (nn.SyncBatchNorm(4), True), (nn.GroupNorm(2, 4), True),
    (FrozenBatchNorm2d(4), True), (resolve_norm_layer('gn')(16), True),
    (nn.Conv2d(4, 4, 1), False), (nn.SiLU(), False), (nn.Identity(), False),
    (nn.LayerNorm(4), False)])
def test_is_norm(module, expected):
    assert is_norm(module) is expected
