"""effnet_backbones.blocks: MBConv equals torchvision's and timm's blocks; skip and drop path."""
import dataclasses
from functools import partial

import pytest
import timm
import torch
import torch.nn as nn
import torchvision

from calibration import (assert_close_relative, calibrate_bn, copy_state_in_order, n_params,
                         randomise_affine)
from effnet_backbones.blocks import MBConv, build_stage
from effnet_backbones.layers import Conv2dSame, DropPath, SqueezeExcite
from effnet_backbones.spec import build_plan
from reference import REFERENCE

pytestmark = pytest.mark.usefixtures('one_thread')

B0_PLAN = build_plan('b0')
#: (stage, index) of B0 blocks of every kind: no expansion, stride 2, skip, 5x5, deep skip
BLOCK_KINDS = [(0, 0), (1, 0), (1, 1), (2, 0), (5, 1)]


@pytest.fixture(scope='module')
def torchvision_b0():
    """torchvision's B0 (random init, no stochastic depth) in eval mode."""
    return torchvision.models.efficientnet_b0(weights=None, stochastic_depth_prob=0.0).eval()


def block_input(spec, size=8, batch=2, seed=0):
    """A random input for the block ``spec``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, spec.in_channels, size, size, generator=gen)


# ----------------------------------------------------------------------------- equals torchvision
def test_every_b0_block_has_torchvisions_parameters(torchvision_b0):
    for stage, blocks in enumerate(B0_PLAN.stages):
        for index, spec in enumerate(blocks):
            ours = MBConv(spec, nn.BatchNorm2d, nn.SiLU)
            theirs = torchvision_b0.features[stage + 1][index]
            assert n_params(ours) == n_params(theirs), (stage, index)
            assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]
    # torchvision's features[2][0], 16 -> 24 channels, expand 6, stride 2: expand 16*96 + 2*96,
    # depthwise 96*9 + 2*96, SE 96*4 + 4 + 4*96 + 96, project 96*24 + 2*24
    assert n_params(MBConv(B0_PLAN.stages[1][0], nn.BatchNorm2d, nn.SiLU)) == 6004


@pytest.mark.parametrize('stage,index', BLOCK_KINDS)
@pytest.mark.parametrize('training', [False, True])
def test_block_outputs_equal_torchvision_after_copying_weights(torchvision_b0, stage, index,
                                                               training):
    spec = B0_PLAN.stages[stage][index]
    ours = randomise_affine(MBConv(spec, nn.BatchNorm2d, nn.SiLU), seed=stage * 10 + index)
    x = block_input(spec, size=9)  # odd side: padding shows at the borders
    calibrate_bn(ours, x)
    theirs = torchvision_b0.features[stage + 1][index]
    copy_state_in_order(ours, theirs)
    ours.train(training)
    theirs.train(training)
    with torch.no_grad():
        out = ours(x)
        expected = theirs(x)
    theirs.eval()
    assert out.std() > 0.1
    assert_close_relative(out, expected, rtol=1e-5)
    if training:  # the same statistics updates as well
        assert_close_relative([b for b in ours.buffers()], [b for b in theirs.buffers()], rtol=1e-6)


def test_tf_same_padding_block_equals_timm_tf_port():
    """A stride-2 block with 'same' padding and BN eps 1e-3 equals timm's tf_efficientnet_b0 block
    on an even side, where TF pads asymmetrically."""
    reference = timm.create_model('tf_efficientnet_b0', pretrained=False).blocks[1][0].eval()
    spec = B0_PLAN.stages[1][0]
    ours = MBConv(spec, partial(nn.BatchNorm2d, eps=1e-3), nn.SiLU, padding='same')
    assert isinstance(ours.depthwise.conv, Conv2dSame)
    randomise_affine(ours, seed=3)
    x = block_input(spec, size=10)
    calibrate_bn(ours, x)
    copy_state_in_order(ours, reference)
    with torch.no_grad():
        assert_close_relative(ours(x), reference(x), rtol=1e-5)
        symmetric = MBConv(spec, partial(nn.BatchNorm2d, eps=1e-3), nn.SiLU).eval()
        copy_state_in_order(ours, symmetric)
        assert (symmetric(x) - reference(x)).abs().max() > 1e-2  # the padding matters here


# ----------------------------------------------------------------------------- block structure
@pytest.mark.parametrize('stage,index', BLOCK_KINDS)
def test_block_layout_follows_its_spec(stage, index):
    spec = B0_PLAN.stages[stage][index]
    block = MBConv(spec, nn.BatchNorm2d, nn.SiLU)
    mid = spec.in_channels * spec.expand_ratio
    assert isinstance(block.expand, nn.Identity) == (spec.expand_ratio == 1)
    dw = block.depthwise.conv
    assert (dw.in_channels, dw.out_channels, dw.groups) == (mid, mid, mid)
    assert (dw.kernel_size[0], dw.stride[0]) == (spec.kernel_size, spec.stride)
    assert isinstance(block.se, SqueezeExcite)
    assert (block.se.reduce.out_channels, block.se.expand.out_channels) == (spec.se_channels, mid)
    assert block.project.conv.out_channels == spec.out_channels
    assert isinstance(block.project.act, nn.Identity)  # linear bottleneck


@pytest.mark.parametrize('output_stride', [32, 8])
def test_skip_is_present_exactly_for_stride_one_blocks_that_keep_channels(output_stride):
    plan = build_plan('b0', output_stride=output_stride)
    with_skip = 0
    for spec in plan.blocks:
        block = MBConv(spec, nn.BatchNorm2d, nn.SiLU).eval()
        with torch.no_grad():  # a branch that outputs zeros leaves only the skip
            block.project.norm.weight.zero_()
            block.project.norm.bias.zero_()
            x = block_input(spec, size=4, batch=1)
            out = block(x)
        expect_skip = spec.stride == 1 and spec.in_channels == spec.out_channels
        with_skip += expect_skip
        if expect_skip:
            assert torch.equal(out, x), (spec.stage, spec.index)
        else:
            assert torch.equal(out, torch.zeros_like(out)), (spec.stage, spec.index)
    assert with_skip == REFERENCE['b0'][5]  # 9: dilation instead of stride adds no skips


def test_drop_path_only_on_the_residual_branch_with_the_spec_rate():
    plan = build_plan('b0', drop_path_rate=0.4)
    for spec in plan.blocks:
        block = MBConv(spec, nn.BatchNorm2d, nn.SiLU)
        if spec.stride == 1 and spec.in_channels == spec.out_channels:
            assert isinstance(block.drop_path, DropPath)
            assert block.drop_path.p == pytest.approx(0.4 * (plan.blocks.index(spec)) / 16)
        else:
            assert isinstance(block.drop_path, nn.Identity)


def test_a_dropped_sample_is_its_input_and_a_kept_one_is_input_plus_scaled_branch():
    spec = dataclasses.replace(B0_PLAN.stages[1][1], drop_path=0.5)
    block = randomise_affine(MBConv(spec, nn.BatchNorm2d, nn.SiLU), seed=9)
    x = block_input(spec, size=4, batch=32)
    with torch.no_grad():
        block.train()
        torch.manual_seed(1)
        out = block(x)
        branch = block.project(block.se(block.depthwise(block.expand(x))))
    dropped = (out == x).flatten(1).all(1)
    assert 0 < dropped.sum() < 32
    kept = ~dropped
    torch.testing.assert_close(out[kept], x[kept] + branch[kept] / 0.5, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- build_stage
def test_build_stage_is_a_sequence_of_the_stage_blocks_with_its_padding():
    blocks = B0_PLAN.stages[2]
    stage = build_stage(blocks, nn.BatchNorm2d, nn.SiLU, padding='same')
    assert isinstance(stage, nn.Sequential) and len(stage) == len(blocks) == 2
    assert all(isinstance(block, MBConv) for block in stage)
    # the stride-2 5x5 block needs run-time padding, the stride-1 one does not
    assert [isinstance(block.depthwise.conv, Conv2dSame) for block in stage] == [True, False]
    x = torch.randn(2, 24, 9, 9)
    assert stage(x).shape == (2, 40, 5, 5)
