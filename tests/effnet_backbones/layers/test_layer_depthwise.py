"""The fast depthwise weight gradient: equal to PyTorch's, used where it should be, nowhere else
(test_lib_compile.py traces the training backbone, fast path included, without graph breaks)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from effnet_backbones import EfficientNet
from effnet_backbones.layers import depthwise
from effnet_backbones.layers.conv import create_conv2d
from effnet_backbones.layers.conv import DepthwiseConv2d, DepthwiseConv2dSame, replan_conv2d
from effnet_backbones.layers.small_conv import PointwiseConv2d
from effnet_backbones.layers.depthwise import (depthwise_conv2d, depthwise_weight_grad,
                                               fast_depthwise, uses_fast_weight_grad)


def _relative(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@pytest.fixture
def count_fast_calls(monkeypatch):
    """How often the fast weight gradient ran (the module attribute ``conv2d_backward`` calls)."""
    calls = []
    original = depthwise.depthwise_weight_grad

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(depthwise, 'depthwise_weight_grad', counting)
    return calls


# kernel, stride, dilation, padding: B0-B7's 5x5 layers (stride 1 and 2), a dilated one (output
# stride 16/8), an asymmetric-size input, a 7x7 and a no-padding case
OP_CASES = [(5, 1, 1, 2), (5, 2, 1, 2), (5, 1, 2, 4), (5, 2, 1, 0), (7, 1, 3, 9), (5, 3, 1, 2)]


@pytest.mark.parametrize('kernel, stride, dilation, padding', OP_CASES)
@pytest.mark.parametrize('height, width', [(17, 20), (16, 16)])
def test_weight_grad_equals_pytorch_in_float64(kernel, stride, dilation, padding, height, width):
    torch.manual_seed(0)
    x = torch.randn(3, 6, height, width, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(x, weight, None, stride, padding, dilation, 6)
    grad_out = torch.randn_like(out)
    expected = torch.autograd.grad(out, (x, weight), grad_out)
    fast = depthwise_conv2d(x, weight, (stride, stride), (padding, padding), (dilation, dilation))
    got = torch.autograd.grad(fast, (x, weight), grad_out)
    assert torch.equal(fast, out)
    assert torch.equal(got[0], expected[0])  # the input gradient is PyTorch's own
    assert _relative(got[1], expected[1]) < 1e-12


@pytest.mark.parametrize('channels_last', [False, True])
def test_weight_grad_in_float32_and_channels_last(channels_last):
    torch.manual_seed(0)
    x = torch.randn(4, 24, 33, 29)
    grad_out = torch.randn(4, 24, 17, 15)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(24, 1, 5, 5)
    expected = torch.ops.aten.convolution_backward(
        grad_out.double(), x.double(), weight.double(), None, [2, 2], [2, 2], [1, 1], False, [0, 0], 24,
        [False, True, False])[1]
    got = depthwise_weight_grad(x, grad_out, (5, 5), (2, 2), (2, 2), (1, 1))
    assert got.dtype == torch.float32 and got.shape == (24, 1, 5, 5)
    assert _relative(got.double(), expected) < 1e-5


def test_which_convolutions_take_the_fast_path():
    x = torch.randn(1, 8, 8, 8)
    assert uses_fast_weight_grad(x, torch.randn(8, 1, 5, 5), 8)
    assert uses_fast_weight_grad(x, torch.randn(8, 1, 7, 7), 8)
    assert not uses_fast_weight_grad(x, torch.randn(8, 1, 3, 3), 8)  # PyTorch's is as fast
    assert not uses_fast_weight_grad(x, torch.randn(8, 2, 5, 5), 4)  # grouped, not depthwise
    assert not uses_fast_weight_grad(x, torch.randn(8, 8, 5, 5), 1)  # dense
    assert not uses_fast_weight_grad(x.to('meta'), torch.randn(8, 1, 5, 5), 8)  # not a CPU tensor
    with fast_depthwise(False):
        assert not uses_fast_weight_grad(x, torch.randn(8, 1, 5, 5), 8)
    assert uses_fast_weight_grad(x, torch.randn(8, 1, 5, 5), 8)  # the context restores it


@pytest.mark.parametrize('padding', ['symmetric', 'same'])
@pytest.mark.parametrize('stride', [1, 2])
def test_depthwise_conv_module_equals_plain_conv_and_keeps_its_hooks(padding, stride,
                                                                     count_fast_calls):
    torch.manual_seed(0)
    conv = create_conv2d(6, 6, 5, stride=stride, groups=6, padding=padding).double()
    assert isinstance(conv, DepthwiseConv2dSame if padding == 'same' and stride == 2
                      else DepthwiseConv2d)
    plain = copy.deepcopy(conv)
    plain.__class__ = type(conv).__mro__[1]  # the same conv as its parent, nn.Conv2d or Conv2dSame
    x = torch.randn(2, 6, 15, 12, dtype=torch.float64, requires_grad=True)
    expected = plain(x)
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, plain.weight))
    hooked = []
    conv.register_forward_hook(lambda module, inputs, output: hooked.append(output.shape))
    got = conv(x)
    got_grads = torch.autograd.grad(got.square().sum(), (x, conv.weight))
    assert torch.equal(got, expected)
    assert _relative(got_grads[0], expected_grads[0]) < 1e-12
    assert _relative(got_grads[1], expected_grads[1]) < 1e-12
    assert len(count_fast_calls) == 1 and hooked == [got.shape]  # FLOP counters see it
    with torch.no_grad():  # inference: the plain convolution, no fast path
        conv(x)
    assert len(count_fast_calls) == 1 and len(hooked) == 2


def test_only_depthwise_convs_get_the_class_and_replanning_keeps_it():
    assert type(create_conv2d(8, 16, 5, groups=8)) is torch.nn.Conv2d  # grouped, not depthwise
    assert type(create_conv2d(8, 8, 1)) is PointwiseConv2d  # nn.Conv2d + the small-map path
    conv = create_conv2d(8, 8, 5, groups=8)
    replan_conv2d(conv, 'same', stride=2)
    assert type(conv) is DepthwiseConv2dSame
    replan_conv2d(conv, 'symmetric', stride=1, dilation=2)
    assert type(conv) is DepthwiseConv2d and conv.padding == (4, 4)


@pytest.mark.parametrize('options', [dict(), dict(memory_efficient=True),
                                     dict(padding='same', output_stride=8),
                                     dict(memory_efficient=True, padding='same', output_stride=16)],
                         ids=str)
def test_backbone_gradients_equal_pytorch_backward(options, count_fast_calls):
    torch.manual_seed(0)
    model = EfficientNet('b0', **options).double().train()
    x = torch.randn(2, 3, 67, 61, dtype=torch.float64)
    grads = []
    for fast in (False, True):
        torch.manual_seed(1)  # the same drop-path draws
        model.zero_grad()
        with fast_depthwise(fast):
            sum(tap.square().mean() for tap in model(x)).backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    for name, expected in grads[0].items():
        assert _relative(grads[1][name], expected) < 1e-10, name
    # B0's 5x5 depthwise convs: blocks 3-4, 8-10, 11-14 (two by two), one call each
    five_by_five = sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d)
                       and m.groups > 1 and m.kernel_size == (5, 5))
    assert len(count_fast_calls) == five_by_five > 0


def test_bfloat16_autocast_trains_with_float32_weight_grads(count_fast_calls):
    torch.manual_seed(0)
    model = EfficientNet('b0', out_indices=(2,)).train()
    x = torch.randn(2, 3, 64, 64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(x)[0]
    out.float().square().mean().backward()
    depthwise_weight = model.stages[2][0].depthwise.conv.weight
    assert depthwise_weight.shape[-1] == 5
    assert depthwise_weight.grad.dtype == torch.float32
    assert torch.isfinite(depthwise_weight.grad).all() and depthwise_weight.grad.abs().sum() > 0
    assert count_fast_calls and all(shape[0] == 2 for shape in count_fast_calls)

