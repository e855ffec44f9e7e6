"""effnet_backbones.layers.attention: SE in blocks (torchvision, timm), scSE on taps (smp)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from segmentation_models_pytorch.base.modules import SCSEModule
from timm.models._efficientnet_blocks import SqueezeExcite as TimmSqueezeExcite
from torchvision.ops.misc import SqueezeExcitation

from calibration import copy_state_in_order
from effnet_backbones.layers import SCSE, SqueezeExcite

pytestmark = pytest.mark.usefixtures('one_thread')


def randomised(module: nn.Module, seed: int) -> nn.Module:
    """``module`` with all parameters drawn from N(0, 0.5): biases and gates away from defaults."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return module


# ----------------------------------------------------------------------------- SqueezeExcite
def test_squeeze_excite_equals_torchvision_squeeze_excitation():
    ours = randomised(SqueezeExcite(96, 4, nn.SiLU), seed=1)
    reference = SqueezeExcitation(96, 4, activation=nn.SiLU)
    copy_state_in_order(ours, reference)
    x = torch.randn(2, 96, 7, 5)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-6, atol=1e-6)
    gate = ours.gate(x)
    assert gate.shape == (2, 96, 1, 1) and ((gate > 0) & (gate < 1)).all()
    torch.testing.assert_close(ours(x), x * gate)


def test_squeeze_excite_equals_timm_squeeze_excite():
    ours = randomised(SqueezeExcite(144, 6, nn.SiLU), seed=2)
    reference = TimmSqueezeExcite(144, rd_channels=6, act_layer=nn.SiLU)
    copy_state_in_order(ours, reference)
    x = torch.randn(2, 144, 6, 6)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-6, atol=1e-6)


def test_squeeze_excite_gates_each_sample_by_its_own_mean():
    se = randomised(SqueezeExcite(8, 2, nn.ReLU), seed=3)
    x = torch.randn(3, 8, 4, 4)
    out = se(x)
    for index in range(3):
        torch.testing.assert_close(out[index:index + 1], se(x[index:index + 1]))
    # the gate sees only the spatial mean: a spatial permutation permutes the output
    permuted = x.flatten(2)[:, :, torch.randperm(16)].view_as(x)
    torch.testing.assert_close(se.gate(permuted), se.gate(x))


# ----------------------------------------------------------------------------- SCSE
def hand_scse(x, scse):
    """x * cSE(x) + x * sSE(x) written out with functional ops on the module's weights."""
    reduce, expand = scse.channel_gate[1], scse.channel_gate[3]
    pooled = x.mean((2, 3), keepdim=True)
    channel = torch.sigmoid(F.conv2d(F.relu(F.conv2d(pooled, reduce.weight, reduce.bias)),
                                     expand.weight, expand.bias))
    spatial = torch.sigmoid(F.conv2d(x, scse.spatial_gate[0].weight, scse.spatial_gate[0].bias))
    assert channel.shape == (x.shape[0], x.shape[1], 1, 1)
    assert spatial.shape == (x.shape[0], 1, *x.shape[2:])
    return x * channel + x * spatial


@pytest.mark.parametrize('channels,reduction', [(40, 16), (112, 8), (24, 1)])
def test_scse_is_the_sum_of_channel_and_spatial_gating(channels, reduction):
    scse = randomised(SCSE(channels, reduction), seed=channels)
    assert scse.channel_gate[1].out_channels == channels // reduction
    x = torch.randn(2, channels, 6, 7)
    torch.testing.assert_close(scse(x), hand_scse(x, scse), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('channels,reduction', [(40, 16), (320, 16), (24, 4)])
def test_scse_equals_smp_scse_module(channels, reduction):
    ours = randomised(SCSE(channels, reduction), seed=7)
    reference = SCSEModule(channels, reduction)
    copy_state_in_order(ours, reference)
    x = torch.randn(2, channels, 5, 6)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-6, atol=1e-6)


def test_scse_keeps_a_one_channel_bottleneck_where_smp_would_have_none():
    scse = randomised(SCSE(8, reduction=16), seed=4)  # smp: 8 // 16 = 0 hidden channels
    assert scse.channel_gate[1].out_channels == 1
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(scse(x), hand_scse(x, scse), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('reduction', [0, -2, 2.5, '16'])
def test_scse_rejects_bad_reductions_by_value(reduction):
    message = rf'scse_reduction must be a positive int, got {reduction!r}'
    with pytest.raises(ValueError, match=message):
        SCSE(32, reduction)
