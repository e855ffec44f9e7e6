"""The trainability switches of the backbone: block attention, SE width, ResNet-D shortcuts,
zero-initialised residual branches and tap dropout. Each default must give the paper's network."""
import pytest
import torch
import torch.nn as nn

import describe  # tools/describe.py (tests/conftest.py puts tools/ on sys.path)
from calibration import calibrate_bn
from effnet_backbones import EfficientNet, create_smp_model
from effnet_backbones.blocks import MBConv, ResNetDShortcut
from effnet_backbones.body import residual_blocks
from effnet_backbones.layers import SCSE, ChannelSE, SpatialSE, SqueezeExcite
from effnet_backbones.profile import count_parameters, describe_variant
from effnet_backbones.spec import build_plan

ALL_LEVELS = (0, 1, 2, 3, 4)


def _blocks(model: nn.Module):
    return [module for module in model.modules() if isinstance(module, MBConv)]


def _se_parameters(arch: str) -> int:
    """What the paper's SE layers weigh, from the plan: reduce and expand 1x1 convs with biases."""
    return sum(2 * block.mid_channels * block.se_channels + block.se_channels + block.mid_channels
               for block in build_plan(arch).blocks)


@pytest.mark.parametrize('arch', ['b0', 'b4'])
def test_defaults_are_the_paper_network(arch):
    model = EfficientNet(arch, out_indices=ALL_LEVELS)
    blocks = _blocks(model)
    assert all(isinstance(block.se, SqueezeExcite) for block in blocks)
    assert not any(isinstance(m, ResNetDShortcut) for m in model.modules())
    assert len(residual_blocks(model)) == sum(b.has_skip for b in build_plan(arch).blocks)
    assert all(float(block.project.norm.weight.detach().min()) == 1.0 for block in blocks)
    assert isinstance(model.tap_dropout, nn.Identity)


@pytest.mark.parametrize('arch', ['b0', 'b4'])
@pytest.mark.parametrize('options', [dict(block_attention=None), dict(se_ratio=0.0)])
def test_no_se_removes_exactly_the_se_parameters(arch, options):
    default = count_parameters(EfficientNet(arch, out_indices=ALL_LEVELS))
    model = EfficientNet(arch, out_indices=ALL_LEVELS, **options)
    assert not any(isinstance(m, SqueezeExcite) for m in model.modules())
    assert count_parameters(model) == default - _se_parameters(arch)


def test_se_ratio_sets_the_bottleneck_width():
    model = EfficientNet('b0', out_indices=ALL_LEVELS, se_ratio=0.5)
    for block, spec in zip(_blocks(model), build_plan('b0').blocks):
        assert block.se.reduce.out_channels == max(1, int(spec.in_channels * 0.5))
    with pytest.raises(ValueError, match='se_ratio'):
        EfficientNet('b0', se_ratio=1.5)


@pytest.mark.parametrize('kind,cls', [('cse', ChannelSE), ('sse', SpatialSE), ('scse', SCSE)])
def test_block_attention_kinds(kind, cls):
    model = EfficientNet('b0', block_attention=kind)
    assert all(isinstance(block.se, cls) for block in _blocks(model))
    x = torch.randn(2, 3, 64, 64)
    model(x)[-1].sum().backward()
    gates = [p for block in _blocks(model) for p in block.se.parameters()]
    assert gates and all(p.grad is not None and p.grad.abs().sum() > 0 for p in gates)
    with pytest.raises(ValueError, match='block_attention'):
        EfficientNet('b0', block_attention='cbam')


def test_memory_efficient_path_matches_for_other_attention():
    torch.manual_seed(0)
    plain = EfficientNet('b0', block_attention='scse', shortcut='resnet_d')
    fused = EfficientNet('b0', block_attention='scse', shortcut='resnet_d', memory_efficient=True)
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for a, b in zip(plain(x), fused(x)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('arch,blocks', [('b0', 16), ('b4', 32)])
def test_resnet_d_makes_every_block_residual(arch, blocks):
    default = EfficientNet(arch, out_indices=ALL_LEVELS)
    model = EfficientNet(arch, out_indices=ALL_LEVELS, shortcut='resnet_d')
    assert len(residual_blocks(model)) == blocks == len(_blocks(model))
    projected = [spec for spec in build_plan(arch).blocks if not spec.has_skip]
    # each projection shortcut: a bias-free 1x1 conv and a BN (scale and shift)
    extra = sum(spec.in_channels * spec.out_channels + 2 * spec.out_channels for spec in projected)
    assert count_parameters(model) - count_parameters(default) == extra
    row = describe_variant(arch, dict(shortcut='resnet_d'))
    assert row['skip_blocks'] == blocks and row['skip_ratio'] == 1.0
    assert row['params_change'] == extra


@pytest.mark.parametrize('output_stride', [32, 8])
def test_resnet_d_shortcut_follows_strides_and_odd_sizes(output_stride):
    model = EfficientNet('b0', shortcut='resnet_d', output_stride=output_stride)
    reference = EfficientNet('b0', output_stride=output_stride)
    x = torch.randn(2, 3, 67, 93)
    shapes = [o.shape for o in model(x)]
    assert shapes == [o.shape for o in reference(x)]
    model(x)[-1].sum().backward()
    shortcuts = [m for m in model.modules() if isinstance(m, ResNetDShortcut)]
    assert all(m.conv.weight.grad.abs().sum() > 0 for m in shortcuts)


def test_set_output_stride_replans_the_shortcut_pools():
    model = EfficientNet('b0', shortcut='resnet_d')
    model.set_output_stride(8)
    rebuilt = EfficientNet('b0', shortcut='resnet_d', output_stride=8)
    x = torch.randn(1, 3, 64, 96)
    assert [o.shape for o in model(x)] == [o.shape for o in rebuilt(x)]
    pools = [type(m.pool) for m in model.modules() if isinstance(m, ResNetDShortcut)]
    assert pools == [type(m.pool) for m in rebuilt.modules() if isinstance(m, ResNetDShortcut)]


@pytest.mark.parametrize('shortcut', [None, 'resnet_d'])
def test_zero_init_residual_makes_residual_blocks_start_as_their_shortcut(shortcut):
    model = EfficientNet('b0', zero_init_residual=True, shortcut=shortcut)
    residual = residual_blocks(model)
    assert len(residual) == (9 if shortcut is None else 16)
    assert all(float(block.project.norm.weight.detach().abs().max()) == 0.0 for block in residual)
    non_residual = [block for block in _blocks(model) if not block.has_skip]
    assert all(float(block.project.norm.weight.detach().min()) == 1.0 for block in non_residual)
    model.train()
    # a residual block then computes exactly its shortcut: identity blocks return their input
    for block in residual:
        x = torch.randn(2, _block_in_channels(block), 16, 16)
        torch.testing.assert_close(block(x), block.shortcut(x))
    # zeroed scales still learn
    model(torch.randn(2, 3, 64, 64))[-1].sum().backward()
    assert residual[-1].project.norm.weight.grad.abs().sum() > 0


def _block_in_channels(block: MBConv) -> int:
    first = block.expand if hasattr(block.expand, 'conv') else block.depthwise
    return first.conv.in_channels


def test_zero_init_residual_survives_init_weights_and_rebuild_from_config():
    model = EfficientNet('b0', zero_init_residual=True, shortcut='resnet_d', tap_dropout=0.1,
                         block_attention='cse')
    model.init_weights()
    assert all(float(b.project.norm.weight.detach().abs().max()) == 0.0 for b in residual_blocks(model))
    rebuilt = EfficientNet(**model.config)
    assert rebuilt.config == model.config
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_tap_dropout_drops_whole_channels_in_training_only():
    model = EfficientNet('b0', tap_dropout=0.5)
    calibrate_bn(model, torch.randn(4, 3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    model.train()
    torch.manual_seed(0)
    taps = model(x)
    dropped = [(tap.abs().sum((2, 3)) == 0).float().mean() for tap in taps]
    assert all(0.2 < float(share) < 0.8 for share in dropped)
    model.eval()
    reference = EfficientNet('b0')
    reference.load_state_dict(model.state_dict())
    reference.eval()
    for a, b in zip(model(x), reference(x)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match='tap_dropout'):
        EfficientNet('b0', tap_dropout=1.0)


def test_switches_reach_the_smp_unet():
    model = create_smp_model('Unet', 'b0', in_channels=1, classes=2, encoder_options=dict(
        shortcut='resnet_d', block_attention=None, zero_init_residual=True))
    encoder = model.encoder.backbone if hasattr(model.encoder, 'backbone') else model.encoder
    assert any(isinstance(m, ResNetDShortcut) for m in encoder.modules())
    assert not any(isinstance(m, SqueezeExcite) for m in encoder.modules())
    out = model(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 2, 64, 64)


def test_scripted_with_switches():
    model = EfficientNet('b0', shortcut='resnet_d', block_attention='scse', tap_dropout=0.1).eval()
    x = torch.randn(1, 3, 64, 64)
    scripted = torch.jit.script(model)
    for a, b in zip(model(x), scripted(x)):
        torch.testing.assert_close(a, b)


def test_describe_cli_reports_option_effects(capsys):
    describe.main(['b0', '--option', 'shortcut=resnet_d', '--option', 'block_attention=None',
                   '--format', 'json'])
    out = capsys.readouterr().out
    assert '"skip_blocks": 16' in out and '"params_change"' in out
    with pytest.raises(SystemExit):
        describe.main(['b0', '--option', 'shortcut'])
