"""effnet_backbones.layers.conv: TF 'same' padding, Conv2dSame, create_conv2d, ConvNormAct."""
import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import create_conv2d as timm_create_conv2d
from timm.layers.padding import get_padding_value, get_same_padding

from effnet_backbones.layers import (Conv2dSame, ConvNormAct, PointwiseConv2d, create_conv2d,
                                     same_padding)

pytestmark = pytest.mark.usefixtures('one_thread')

KERNELS, STRIDES, DILATIONS = (1, 2, 3, 5, 7), (1, 2, 3), (1, 2)
GEOMETRIES = list(itertools.product(KERNELS, STRIDES, DILATIONS))


def span_of(kernel_size, dilation):
    """Input pixels one output pixel of the conv sees along a side."""
    return (kernel_size - 1) * dilation + 1


# ----------------------------------------------------------------------------- same_padding
@pytest.mark.parametrize('kernel_size,stride,dilation', GEOMETRIES)
def test_same_padding_is_tensorflows_and_gives_ceil_outputs(kernel_size, stride, dilation):
    for size in range(1, 34):
        before, after = same_padding(size, kernel_size, stride, dilation)
        total = get_same_padding(size, kernel_size, stride, dilation)  # timm's port of TF 'SAME'
        assert (before, after) == (total // 2, total - total // 2), size
        assert before >= 0 and after - before in (0, 1)  # the odd pixel goes after, as in TF
        out = (size + before + after - span_of(kernel_size, dilation)) // stride + 1
        assert out == math.ceil(size / stride), size


@pytest.mark.parametrize('size,kernel_size,stride,dilation,expected', [
    (8, 3, 2, 1, (0, 1)),  # even side, stride 2: asymmetric
    (7, 3, 2, 1, (1, 1)),
    (8, 5, 2, 1, (1, 2)),
    (9, 5, 2, 1, (2, 2)),
    (10, 3, 1, 2, (2, 2)),  # dilated 3x3 spans 5 pixels
    (8, 2, 1, 1, (0, 1)),  # even kernel at stride 1
    (5, 1, 2, 1, (0, 0)),  # stride larger than the kernel: no padding, never negative
    (4, 1, 3, 1, (0, 0)),
])
def test_same_padding_known_values(size, kernel_size, stride, dilation, expected):
    assert same_padding(size, kernel_size, stride, dilation) == expected


# ----------------------------------------------------------------------------- Conv2dSame
@pytest.mark.parametrize('height,width', [(7, 9), (8, 11), (13, 6)])
@pytest.mark.parametrize('kernel_size,stride,dilation',
                         [(3, 2, 1), (5, 2, 1), (3, 2, 2), (2, 1, 1)])
def test_conv2d_same_equals_explicit_padding_and_timm(height, width, kernel_size, stride, dilation):
    conv = create_conv2d(4, 6, kernel_size, stride=stride, dilation=dilation, padding='same',
                         bias=True)
    assert isinstance(conv, Conv2dSame) and conv.padding == (0, 0)
    x = torch.randn(2, 4, height, width)
    top, bottom = same_padding(height, kernel_size, stride, dilation)
    left, right = same_padding(width, kernel_size, stride, dilation)
    expected = F.conv2d(F.pad(x, [left, right, top, bottom]), conv.weight, conv.bias, stride, 0,
                        dilation)
    out = conv(x)
    assert out.shape[-2:] == (math.ceil(height / stride), math.ceil(width / stride))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    reference = timm_create_conv2d(4, 6, kernel_size, stride=stride, dilation=dilation,
                                   padding='same', bias=True)
    reference.load_state_dict(conv.state_dict())
    torch.testing.assert_close(out, reference(x), rtol=1e-6, atol=1e-6)


def test_asymmetric_padding_differs_from_symmetric():
    # on an even side at stride 2, TF pads 0 before and 1 after; PyTorch ports pad 1 and 1
    same = create_conv2d(3, 5, 3, stride=2, padding='same')
    symmetric = create_conv2d(3, 5, 3, stride=2, padding='symmetric')
    symmetric.load_state_dict(same.state_dict())
    x = torch.randn(1, 3, 8, 8)
    assert same(x).shape == symmetric(x).shape == (1, 5, 4, 4)
    assert not torch.allclose(same(x), symmetric(x), atol=1e-3)
    # the symmetric conv of the input padded (0, 1) on each side is TF's result
    symmetric.padding = (0, 0)
    torch.testing.assert_close(same(x), symmetric(F.pad(x, [0, 1, 0, 1])), rtol=0, atol=0)


def test_groups_reach_the_same_convolution():
    conv = create_conv2d(6, 6, 3, stride=2, groups=6, padding='same')
    assert isinstance(conv, Conv2dSame) and conv.weight.shape == (6, 1, 3, 3)
    x = torch.randn(1, 6, 9, 8)
    expected = F.conv2d(F.pad(x, [0, 1, 1, 1]), conv.weight, None, 2, 0, 1, 6)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=0)


# ----------------------------------------------------------------------------- create_conv2d
def fixed_same_padding(kernel_size, stride, dilation):
    """TF's padding if it is the same symmetric amount for every input side, else None."""
    pads = {same_padding(size, kernel_size, stride, dilation) for size in range(8, 24)}
    if len(pads) == 1 and len(set(*pads)) == 1:
        return pads.pop()[0]
    return None


@pytest.mark.parametrize('kernel_size,stride,dilation', GEOMETRIES)
def test_dynamic_padding_only_where_it_depends_on_the_size(kernel_size, stride, dilation):
    same = create_conv2d(2, 3, kernel_size, stride=stride, dilation=dilation, padding='same')
    _, timm_dynamic = get_padding_value('same', kernel_size, stride=stride, dilation=dilation)
    assert isinstance(same, Conv2dSame) == timm_dynamic
    fixed = fixed_same_padding(kernel_size, stride, dilation)
    if fixed is None:  # asymmetric or size-dependent: only run-time padding is right
        assert isinstance(same, Conv2dSame)
    elif kernel_size > 1 or stride == 1:  # a plain conv with the padding TF would apply
        assert type(same) is _plain_class(kernel_size, stride) and same.padding == (fixed, fixed)
    else:  # strided 1x1: Conv2dSame as in timm, but it pads nothing
        x = torch.randn(1, 2, 9, 10)
        plain = F.conv2d(x, same.weight, None, stride, 0, dilation)
        torch.testing.assert_close(same(x), plain, rtol=0, atol=0)
    symmetric = create_conv2d(2, 3, kernel_size, stride=stride, dilation=dilation)
    assert type(symmetric) is _plain_class(kernel_size, stride)


def _plain_class(kernel_size, stride):
    """What a statically padded conv is built as: stride-1 1x1 convs are the nn.Conv2d
    subclass with the small-map path."""
    return PointwiseConv2d if (kernel_size, stride) == (1, 1) else nn.Conv2d
    assert symmetric.padding == (((kernel_size - 1) * dilation) // 2,) * 2


@pytest.mark.parametrize('kernel_size,stride,dilation',
                         [g for g in GEOMETRIES if g[0] % 2 == 1])
def test_symmetric_padding_gives_ceil_outputs(kernel_size, stride, dilation):
    conv = create_conv2d(2, 3, kernel_size, stride=stride, dilation=dilation, bias=True)
    for height, width in [(9, 16), (15, 10)]:
        x = torch.randn(1, 2, height, width)
        out = conv(x)
        assert out.shape[-2:] == (math.ceil(height / stride), math.ceil(width / stride))
        if stride <= 2:  # EfficientNet's strides: timm's PyTorch-style padding is the same
            reference = timm_create_conv2d(2, 3, kernel_size, stride=stride, dilation=dilation,
                                           bias=True)
            reference.load_state_dict(conv.state_dict())
            torch.testing.assert_close(out, reference(x), rtol=0, atol=0)


def test_create_conv2d_options():
    conv = create_conv2d(4, 8, 5, stride=2, dilation=1, groups=2)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.groups) == \
        (4, 8, (5, 5), (2, 2), 2)
    assert conv.bias is None  # a norm always follows
    assert create_conv2d(4, 8, 1, bias=True).bias is not None


def test_unknown_padding_names_the_value():
    with pytest.raises(ValueError, match=r"padding must be one of \('symmetric', 'same'\), "
                                         r"got 'valid'"):
        create_conv2d(3, 3, 3, padding='valid')


# ----------------------------------------------------------------------------- ConvNormAct
def hand_conv_bn_act(x, block, stride, padding, dilation, groups, training, act):
    """conv -> batch norm -> activation written with functional ops on copies of the statistics.

    Returns (output, running_mean, running_var) after the step.
    """
    norm = block.norm
    mean, var = norm.running_mean.clone(), norm.running_var.clone()
    out = F.conv2d(x, block.conv.weight, None, stride, padding, dilation, groups)
    out = F.batch_norm(out, mean, var, norm.weight, norm.bias, training, norm.momentum, norm.eps)
    return act(out), mean, var


@pytest.mark.parametrize('training', [True, False])
@pytest.mark.parametrize('stride,dilation,groups', [(1, 1, 1), (2, 1, 1), (1, 2, 4), (2, 1, 8)])
def test_conv_norm_act_is_conv_then_bn_then_silu(training, stride, dilation, groups):
    norm_layer = lambda channels: nn.BatchNorm2d(channels, eps=1e-3, momentum=0.3)  # noqa: E731
    block = ConvNormAct(8, 16, 3, norm_layer, nn.SiLU, stride=stride, dilation=dilation,
                        groups=groups)
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.normal_()
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 2.0)
    block.train(training)
    x = torch.randn(2, 8, 11, 10)
    padding = dilation  # symmetric padding of a 3x3 conv: (3 - 1) * dilation / 2
    expected, mean, var = hand_conv_bn_act(x, block, stride, padding, dilation, groups, training,
                                           F.silu)
    out = block(x)
    assert out.shape == (2, 16, math.ceil(11 / stride), math.ceil(10 / stride))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(block.norm.running_mean, mean)
    torch.testing.assert_close(block.norm.running_var, var)


def test_conv_norm_act_without_activation_is_linear_after_the_norm():
    block = ConvNormAct(4, 6, 1, nn.BatchNorm2d, None).train()
    assert isinstance(block.act, nn.Identity)
    x = torch.randn(2, 4, 5, 5)
    expected, _, _ = hand_conv_bn_act(x, block, 1, 0, 1, 1, True, lambda t: t)
    out = block(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert (out < 0).any()  # no activation clipped the negative half


def test_conv_norm_act_with_same_padding_pads_at_run_time():
    block = ConvNormAct(3, 8, 3, nn.BatchNorm2d, nn.ReLU, stride=2, padding='same').eval()
    assert isinstance(block.conv, Conv2dSame)
    x = torch.randn(1, 3, 10, 7)
    expected, _, _ = hand_conv_bn_act(F.pad(x, [1, 1, 0, 1]), block, 2, 0, 1, 1, False, F.relu)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-6)
