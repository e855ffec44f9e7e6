import itertools
import math

import pytest
import timm
import torch
import torch.nn as nn
import torchvision
from torchvision.ops import FrozenBatchNorm2d

from calibration import assert_each_tensor_matters, calibrate_bn
from effnet_backbones import EfficientNet, EfficientNetClassifier, create_backbone, list_backbones
from effnet_backbones.layers import SCSE, Conv2dSame
from reference import ARCHS, REFERENCE, STRIDES


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize('arch', ARCHS)
def test_classifier_parameters_equal_torchvision_and_timm(arch):
    with torch.device('meta'):
        ours = EfficientNetClassifier(arch)
        tv = getattr(torchvision.models, f'efficientnet_{arch}')()
        tm = timm.create_model(f'efficientnet_{arch}')
        tf = timm.create_model(f'tf_efficientnet_{arch}')
    assert n_params(ours) == REFERENCE[arch][0]
    assert n_params(ours) == n_params(tv) == n_params(tm) == n_params(tf)
    # not just the total: every tensor has torchvision's shape, in torchvision's order
    assert [p.shape for p in ours.parameters()] == [p.shape for p in tv.parameters()]


@pytest.mark.parametrize('arch', ARCHS)
def test_backbone_taps_match_reference_channels_and_strides(arch):
    with torch.device('meta'):
        model = EfficientNet(arch, out_indices=(0, 1, 2, 3, 4))
        features = model(torch.empty(1, 3, 64, 96))
    channels = REFERENCE[arch][6]
    assert model.out_channels == list(channels)
    assert model.strides == list(STRIDES)
    assert [tuple(f.shape) for f in features] == [
        (1, c, math.ceil(64 / s), math.ceil(96 / s)) for c, s in zip(channels, STRIDES)]
    assert [info.level for info in model.feature_info] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize('arch', ['b0', 'b3', 'b7'])
def test_timm_features_only_has_the_same_taps(arch):
    with torch.device('meta'):
        ours = EfficientNet(arch, out_indices=(0, 1, 2, 3, 4))
        ref = timm.create_model(f'efficientnet_{arch}', features_only=True)
    assert ours.out_channels == ref.feature_info.channels()
    assert ours.strides == ref.feature_info.reduction()


_ALL_CHOICES = [c for r in range(1, 6) for c in itertools.combinations(range(5), r)]


@pytest.mark.parametrize('out_indices', _ALL_CHOICES, ids=str)
def test_every_out_indices_choice(out_indices):
    model = EfficientNet('b0', out_indices=out_indices).eval()
    features = model(torch.randn(1, 3, 64, 64))
    full = REFERENCE['b0'][6]
    assert [f.shape[1] for f in features] == [full[i] for i in out_indices] == model.out_channels
    assert [64 // f.shape[-1] for f in features] == [STRIDES[i] for i in out_indices] == model.strides


@pytest.mark.parametrize('out_indices,num_stages', [((0,), 1), ((1,), 2), ((1, 2), 3),
                                                    ((1, 2, 3), 5), ((1, 2, 3, 4), 7)])
def test_nothing_past_the_deepest_tap_is_built_and_all_params_get_gradients(out_indices, num_stages):
    model = EfficientNet('b0', out_indices=out_indices, scse=True)
    assert len(model.stages) == num_stages
    sum(f.sum() for f in model(torch.randn(2, 3, 64, 64))).backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


def test_backbone_parameters_are_the_classifier_minus_head():
    backbone, full = EfficientNet('b2'), EfficientNetClassifier('b2')
    head = n_params(full.head) + n_params(full.classifier)
    assert n_params(backbone) == n_params(full) - head


# ----------------------------------------------------------------------------- inputs
@pytest.mark.parametrize('size', [(97, 131), (32, 32), (33, 250)])
def test_odd_input_sizes_give_ceil_sized_taps(size):
    model = EfficientNet('b1', out_indices=(0, 1, 2, 3, 4)).eval()
    features = model(torch.randn(1, 3, *size))
    assert [tuple(f.shape[-2:]) for f in features] == [
        (math.ceil(size[0] / s), math.ceil(size[1] / s)) for s in STRIDES]


@pytest.mark.parametrize('in_chans', [1, 4])
def test_in_chans(in_chans):
    model = EfficientNet('b0', in_chans=in_chans)
    assert model.stem.conv.weight.shape[1] == in_chans
    features = model(torch.randn(2, in_chans, 64, 64))
    assert [f.shape[1] for f in features] == [24, 40, 112, 320]


@pytest.mark.parametrize('padding', ['symmetric', 'same'])
def test_padding_modes(padding):
    model = EfficientNet('b0', padding=padding, out_indices=(0, 1, 2, 3, 4)).eval()
    features = model(torch.randn(1, 3, 97, 131))
    assert [tuple(f.shape[-2:]) for f in features] == [
        (math.ceil(97 / s), math.ceil(131 / s)) for s in STRIDES]
    has_dynamic = any(isinstance(m, Conv2dSame) for m in model.modules())
    assert has_dynamic == (padding == 'same')


def test_same_padding_equals_timm_tf_padding():
    # same weights, TF 'same' padding: our stem output equals timm's Conv2dSame on odd sizes
    from timm.layers import create_conv2d as timm_conv
    ours = EfficientNet('b0', padding='same').stem.conv
    ref = timm_conv(3, 32, 3, stride=2, padding='same')
    ref.weight.data.copy_(ours.weight.data)
    x = torch.randn(1, 3, 97, 130)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize('output_stride', [16, 8])
def test_output_stride_by_dilation(output_stride):
    model = EfficientNet('b0', output_stride=output_stride).eval()
    features = model(torch.randn(1, 3, 64, 64))
    expected = [min(s, output_stride) for s in (4, 8, 16, 32)]
    assert model.strides == expected
    assert [64 // f.shape[-1] for f in features] == expected
    dilations = {m.dilation[0] for m in model.modules() if isinstance(m, nn.Conv2d)}
    assert max(dilations) == 32 // output_stride


@torch.no_grad()
def test_channels_last_gives_the_same_taps():
    x = torch.randn(2, 3, 64, 64)
    model = calibrate_bn(EfficientNet('b0', out_indices=(0, 1, 2, 3, 4)), x)
    ref = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))
    assert all(tap.is_contiguous(memory_format=torch.channels_last) for tap in out[1:])
    assert_each_tensor_matters(out, ref, rtol=1e-4)  # other conv kernels: float32 round-off


# ----------------------------------------------------------------------------- options
def test_scse_changes_the_taps_and_keeps_shapes():
    plain = EfficientNet('b0').train()
    with_scse = EfficientNet('b0', scse=True).train()
    # same backbone weights; only the tap attention differs
    missing = with_scse.load_state_dict(plain.state_dict(), strict=False)
    assert missing.missing_keys and all(k.startswith('taps.') for k in missing.missing_keys)
    x = torch.randn(2, 3, 64, 64)
    for a, b in zip(plain(x), with_scse(x)):
        assert a.shape == b.shape
        assert (a - b).abs().max() > 1e-2 * a.abs().max()
    assert all(isinstance(t, SCSE) for t in with_scse.taps)


def test_scse_is_channel_gate_plus_spatial_gate():
    scse = SCSE(32, reduction=4)
    x = torch.randn(2, 32, 8, 8)
    cse = torch.sigmoid(scse.channel_gate[3](torch.relu(scse.channel_gate[1](x.mean((2, 3), keepdim=True)))))
    sse = torch.sigmoid(scse.spatial_gate[0](x))
    torch.testing.assert_close(scse(x), x * cse + x * sse)


def test_scse_per_tap_flags_and_reduction():
    model = EfficientNet('b0', scse=(False, True, False, True), scse_reduction=8)
    assert [isinstance(t, SCSE) for t in model.taps] == [False, True, False, True]
    assert model.taps[1].channel_gate[1].out_channels == 40 // 8


def test_frozen_stages_get_no_gradient_and_stay_in_eval():
    model = EfficientNet('b0', frozen_stages=2).train()
    frozen = [model.stem, model.stages[0], model.stages[1]]
    assert all(not m.training for f in frozen for m in f.modules())
    assert model.stages[2].training
    sum(f.sum() for f in model(torch.randn(2, 3, 64, 64))).backward()
    for module in frozen:
        assert all(not p.requires_grad and p.grad is None for p in module.parameters())
    assert all(p.grad is not None for p in model.stages[2].parameters())


def test_norm_eval_keeps_batchnorm_statistics_fixed():
    model = EfficientNet('b0', norm_eval=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
    model(torch.randn(2, 3, 64, 64) * 3 + 1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # and without norm_eval they move
    model = EfficientNet('b0').train()
    before = {k: v.clone() for k, v in model.state_dict().items() if 'running_mean' in k}
    model(torch.randn(2, 3, 64, 64) * 3 + 1)
    assert not torch.equal(before['stem.norm.running_mean'], model.state_dict()['stem.norm.running_mean'])


@pytest.mark.parametrize('with_cp', [True, 'stage', 'block'])
def test_with_cp_gives_the_same_gradients_and_statistics(with_cp):
    torch.manual_seed(0)
    plain = EfficientNet('b0', drop_path_rate=0.0).train()
    checkpointed = EfficientNet('b0', with_cp=with_cp).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for model in (plain, checkpointed):
        sum((f ** 2).mean() for f in model(x)).backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)
    for (name, a), b in zip(plain.named_buffers(), checkpointed.buffers()):
        torch.testing.assert_close(a, b, msg=name)  # recomputation must not update BN twice


@pytest.mark.parametrize('norm_layer,cls', [('bn', nn.BatchNorm2d), ('gn', nn.GroupNorm),
                                            ('frozenbn', FrozenBatchNorm2d),
                                            ('syncbn', nn.SyncBatchNorm),
                                            (dict(type='GN', num_groups=4), nn.GroupNorm)])
def test_norm_layers(norm_layer, cls):
    model = EfficientNet('b0', norm_layer=norm_layer).train()
    assert all(isinstance(m, cls) for m in model.modules()
               if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, FrozenBatchNorm2d)))
    x = torch.randn(2, 3, 64, 64)
    conv_out = model.stem.conv(x)
    normed = model.stem.norm(conv_out)
    if cls is FrozenBatchNorm2d:  # fixed statistics (mean 0, var 1) in train mode too
        torch.testing.assert_close(normed, conv_out / (1 + model.stem.norm.eps) ** 0.5)
    else:  # batch statistics per channel (BN, and SyncBN without a group) or per group (GN)
        groups = model.stem.norm.num_groups if cls is nn.GroupNorm else None
        view = conv_out.reshape(2, groups, -1) if groups else conv_out.transpose(0, 1).reshape(32, -1)
        expected = (view - view.mean(-1, keepdim=True)) / (view.var(-1, unbiased=False, keepdim=True)
                                                           + model.stem.norm.eps).sqrt()
        expected = (expected.reshape(2, 32, 32, 32) if groups
                    else expected.reshape(32, 2, 32, 32).transpose(0, 1))
        torch.testing.assert_close(normed, expected, rtol=1e-4, atol=1e-4)
    sum(f.sum() for f in model(x)).backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)


@pytest.mark.parametrize('act_layer,cls', [('swish', nn.SiLU), ('relu6', nn.ReLU6),
                                           ('hardswish', nn.Hardswish)])
def test_act_layers(act_layer, cls):
    model = EfficientNet('b0', act_layer=act_layer).eval()
    acts = [m for m in model.modules() if isinstance(m, (nn.SiLU, nn.ReLU6, nn.Hardswish, nn.ReLU))]
    assert acts and all(type(m) is cls for m in acts)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        stem = model.stem(x)
        expected = cls()(model.stem.norm(model.stem.conv(x)))
    torch.testing.assert_close(stem, expected, rtol=0, atol=0)


def test_bn_eps_and_momentum_defaults_follow_torchvision_and_can_be_set():
    assert (EfficientNet('b0').stem.norm.eps, EfficientNet('b0').stem.norm.momentum) == (1e-5, 0.1)
    with torch.device('meta'):
        b5 = EfficientNet('b5', out_indices=(1,))
    assert (b5.stem.norm.eps, b5.stem.norm.momentum) == (1e-3, 0.01)
    model = EfficientNet('b0', norm_eps=1e-3, norm_momentum=0.01)
    assert {(m.eps, m.momentum) for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {(1e-3, 0.01)}


def test_drop_path_is_active_only_in_training():
    model = EfficientNet('b0', drop_path_rate=0.5, out_indices=(4,))
    assert model.stages[6][0].drop_path.__class__.__name__ == 'Identity'  # no skip -> no drop path
    assert model.stages[5][3].drop_path.p == pytest.approx(0.5 * 14 / 16)
    x = torch.randn(4, 3, 64, 64)
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0])
    model.train()
    torch.manual_seed(1)
    a = model(x)[0]
    torch.manual_seed(2)
    b = model(x)[0]
    assert not torch.allclose(a, b)


def test_create_backbone_and_list_backbones():
    assert list_backbones() == [f'efficientnet_b{i}' for i in range(8)]
    model = create_backbone('efficientnet_b2', out_indices=(2, 3, 4), scse=True)
    assert isinstance(model, EfficientNet) and model.arch == 'b2'
    assert model.out_channels == [48, 120, 352]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('arch', ['b8', 'resnet'])
def test_unknown_arch(arch):
    with pytest.raises(ValueError, match=rf"'{arch}'.*valid: b0, b1, b2, b3, b4, b5, b6, b7"):
        EfficientNet(arch)
    with pytest.raises(ValueError, match=rf"'{arch}'.*efficientnet_b0"):
        create_backbone(arch)


@pytest.mark.parametrize('out_indices,match', [
    ((1, 5), r'entry 5 .*valid: levels 0\.\.4'), ((-1, 2), r'entry -1 '),
    ((3, 1), r'strictly increasing'), ((1, 1, 2), r'strictly increasing'),
    ((), r'empty'), ((1.0, 2), r'entry 1\.0 ')])
def test_bad_out_indices(out_indices, match):
    with pytest.raises(ValueError, match=match):
        EfficientNet('b0', out_indices=out_indices)


def test_out_indices_must_be_a_sequence():
    with pytest.raises(TypeError, match='sequence of ints'):
        EfficientNet('b0', out_indices=3)


@pytest.mark.parametrize('x,match', [
    (torch.randn(1, 1, 64, 64), r'1 channels .*in_chans=3'),
    (torch.randn(1, 3, 31, 64), r'31x64 px is too small.*at least 32'),
    (torch.randn(3, 64, 64), r'4D tensor.*\(3, 64, 64\)'),
    (torch.randn(1, 1, 3, 64, 64), r'4D tensor'),
])
def test_bad_inputs(x, match):
    with pytest.raises(ValueError, match=match):
        EfficientNet('b0')(x)


def test_non_tensor_input():
    with pytest.raises(TypeError, match='torch.Tensor'):
        EfficientNet('b0')([[1.0]])


@pytest.mark.parametrize('options,match', [
    (dict(norm_layer='ln'), r"unknown norm_layer 'ln'; valid: bn, syncbn, gn, frozenbn"),
    (dict(norm_layer=dict(num_groups=4)), r'needs a "type" key'),
    (dict(act_layer='gelu'), r"unknown act_layer 'gelu'; valid: swish, relu6, hardswish"),
    (dict(padding='valid'), r"padding must be one of \('symmetric', 'same'\), got 'valid'"),
    (dict(output_stride=4), r'output_stride must be one of 8, 16, 32, got 4'),
    (dict(in_chans=0), r'in_chans must be a positive int, got 0'),
    (dict(drop_path_rate=1.5), r'drop_path_rate must be in \[0, 1\), got 1.5'),
    (dict(frozen_stages=8), r'frozen_stages must be -1 .*1\.\.7.*got 8'),
    (dict(frozen_stages=5, out_indices=(1, 2)), r'1\.\.3.*got 5'),
    (dict(scse=(True, False)), r'scse has 2 flags but out_indices has 4 taps'),
    (dict(scse_reduction=0), r'scse_reduction must be a positive int, got 0'),
    (dict(with_cp='layer'), r"with_cp must be .*got 'layer'"),
])
def test_invalid_option_values(options, match):
    with pytest.raises(ValueError, match=match):
        EfficientNet('b0', **options)


def test_invalid_option_types():
    with pytest.raises(TypeError, match='scse must be a bool or one bool per tap'):
        EfficientNet('b0', scse='yes')
    with pytest.raises(TypeError, match='norm_layer must be'):
        EfficientNet('b0', norm_layer=3)
    with pytest.raises(TypeError, match='arch must be a string'):
        EfficientNet(4)
