"""EffNetFPN: the backbone's stride 8/16/32 taps as torchvision FPN levels P3-P7."""
import pytest
import torch
import torch.nn as nn
import torchvision

from effnet_backbones import EffNetFPN, EfficientNet, efficientnet_fpn_backbone
from effnet_backbones.layers import SCSE
from effnet_backbones.registry import MODELS
from reference import REFERENCE

NAMES = ['p3', 'p4', 'p5', 'p6', 'p7']


@pytest.mark.parametrize('arch', ['b0', 'b2', 'b3'])
def test_levels_strides_and_channels(arch):
    fpn = EffNetFPN(dict(arch=arch), out_channels=64).eval()
    with torch.no_grad():
        levels = fpn(torch.randn(1, 3, 128, 160))
    assert list(levels) == NAMES
    assert fpn.strides == [8, 16, 32, 64, 128]
    for (name, level), stride in zip(levels.items(), fpn.strides):
        assert level.shape == (1, 64, -(-128 // stride), -(-160 // stride)), name
    # the FPN's inputs are the stride 8/16/32 taps of the variant (DESIGN.md table)
    assert fpn.fpn.inner_blocks[0][0].in_channels == REFERENCE[arch][6][2]
    assert [b[0].in_channels for b in fpn.fpn.inner_blocks] == list(REFERENCE[arch][6][2:])
    assert fpn.out_channels == 64
    assert [info['stride'] for info in fpn.feature_info] == [8, 16, 32, 64, 128]


def _p6_input_channels(fpn, size=96):
    seen = []
    handle = fpn.fpn.extra_blocks.p6.register_forward_hook(
        lambda module, args, out: seen.append(args[0].shape[1]))
    with torch.no_grad():
        fpn.eval()(torch.randn(1, 3, size, size))
    handle.remove()
    return seen[0]


def test_p6_from_c5_or_p5():
    c5 = EffNetFPN(dict(arch='b0'), out_channels=64, p6_from='c5')
    p5 = EffNetFPN(dict(arch='b0'), out_channels=64, p6_from='p5')
    assert _p6_input_channels(c5) == 320  # b0's stride-32 tap
    assert _p6_input_channels(p5) == 64
    # torchvision's LastLevelP6P7 would silently take P5 when C5 has out_channels channels
    same_width = EffNetFPN(dict(arch='b0'), out_channels=320, p6_from='c5')
    assert same_width.fpn.extra_blocks.use_P5 is False
    seen = []
    same_width.body.register_forward_hook(lambda m, a, out: seen.append(out[-1]))
    same_width.fpn.extra_blocks.p6.register_forward_hook(lambda m, a, out: seen.append(a[0]))
    with torch.no_grad():
        same_width.eval()(torch.randn(1, 3, 64, 64))
    assert torch.equal(seen[0], seen[1])  # P6's input is C5 itself


def test_without_extra_levels():
    fpn = EffNetFPN(dict(arch='b0'), out_channels=32, extra_levels=False).eval()
    with torch.no_grad():
        assert list(fpn(torch.randn(1, 3, 64, 64))) == ['p3', 'p4', 'p5']
    assert fpn.strides == [8, 16, 32]


def test_backbone_instance_with_more_taps_and_options():
    body = EfficientNet('b0', out_indices=(1, 2, 3, 4), scse=True, frozen_stages=2, norm_eval=True,
                        in_chans=1)
    fpn = EffNetFPN(body, out_channels=32).train()
    assert fpn.body is body
    assert all(isinstance(tap, SCSE) for tap in body.taps)
    assert not any(p.requires_grad for p in body.stem.parameters())
    assert not any(p.requires_grad for p in body.stages[1].parameters())
    assert all(p.requires_grad for p in body.stages[2].parameters())
    assert not any(m.training for m in body.modules() if isinstance(m, nn.BatchNorm2d))
    levels = fpn(torch.randn(1, 1, 64, 64))  # norm_eval: batch statistics unused
    assert levels['p3'].shape[-1] == 8  # the stride-8 tap, not the stride-4 one
    sum(level.sum() for level in levels.values()).backward()
    assert body.stages[3][0].depthwise.conv.weight.grad is not None


def test_bad_backbones_are_refused():
    with pytest.raises(ValueError, match='out_indices'):
        EffNetFPN(dict(arch='b0', out_indices=(1, 2, 3)))
    with pytest.raises(ValueError, match='output stride of 32'):
        EffNetFPN(dict(arch='b0', output_stride=16))
    with pytest.raises(ValueError, match='p6_from'):
        EffNetFPN(dict(arch='b0'), p6_from='p4')


def test_registry_and_factory():
    fpn = MODELS.build(dict(type='effnet_backbones.EffNetFPN', out_channels=32,
                            backbone=dict(type='effnet_backbones.EfficientNet', arch='b1')))
    assert isinstance(fpn.body, EfficientNet) and fpn.body.arch == 'b1'
    named = efficientnet_fpn_backbone('efficientnet_b2', out_channels=32, p6_from='p5')
    assert named.body.arch == 'b2' and named.body.out_indices == (2, 3, 4)
    assert named.fpn.extra_blocks.use_P5


def test_plain_torchvision_retinanet_runs_on_it():
    fpn = EffNetFPN(dict(arch='b0'), out_channels=32)
    model = torchvision.models.detection.RetinaNet(fpn, num_classes=3, min_size=64, max_size=64)
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 80)])
    assert set(out[0]) == {'boxes', 'scores', 'labels'}
