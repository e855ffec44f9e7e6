"""Small-map convolutions: equal to F.conv2d, taken where the rule says, nowhere else."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from effnet_backbones import EfficientNet
from effnet_backbones.bifpn import BiFPN
from effnet_backbones.layers import small_conv
from effnet_backbones.layers.attention import SqueezeExcite
from effnet_backbones.layers.conv import DepthwiseConv2d, create_conv2d, replan_conv2d
from effnet_backbones.layers.small_conv import PointwiseConv2d, set_small_conv, small_conv2d


def _relative(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) if a.numel() else 0.0


@pytest.fixture
def path_taken(monkeypatch):
    """Which small-map formulation ran: 'thnn', 'linear' or 'unfold', one entry per call."""
    calls = []
    for name, label in (('_thnn_pointwise', 'thnn'), ('_linear_pointwise', 'linear'),
                        ('_unfold_depthwise3x3', 'unfold')):
        original = getattr(small_conv, name)

        def counting(*args, _original=original, _label=label):
            calls.append(_label)
            return _original(*args)

        monkeypatch.setattr(small_conv, name, counting)
    return calls


# (batch, in, out, side, path): the rule of docs/benchmarks.md "Small maps"
POINTWISE_CASES = [
    (2, 64, 64, 16, 'thnn'),       # BiFPN width, P3 of a 128 px crop: small weight, 512 pixels
    (2, 1152, 48, 1, 'thnn'),      # an SE reduce on its pooled 1 x 1 map
    (8, 320, 1152, 2, 'linear'),   # a wide layer on 2 x 2: one matrix product
    (2, 192, 1152, 4, 'thnn'),     # wide, 32 pixels
    (2, 64, 64, 32, None),         # 2048 pixels: oneDNN
    (8, 672, 112, 4, None),        # wide, 128 pixels: oneDNN
]


@pytest.mark.parametrize('batch, cin, cout, side, path', POINTWISE_CASES)
def test_pointwise_equals_conv2d_and_takes_its_path(batch, cin, cout, side, path, path_taken):
    torch.manual_seed(0)
    conv = PointwiseConv2d(cin, cout, 1).double()
    x = torch.randn(batch, cin, side, side, dtype=torch.float64, requires_grad=True)
    out = conv(x)
    assert path_taken == ([path] if path else [])
    expected = F.conv2d(x, conv.weight, conv.bias)
    grad = torch.randn_like(expected)
    got = torch.autograd.grad(out, (x, conv.weight, conv.bias), grad)
    want = torch.autograd.grad(expected, (x, conv.weight, conv.bias), grad)
    assert out.shape == expected.shape and out.is_contiguous()
    assert _relative(out, expected) < 1e-12
    for g, w in zip(got, want):
        assert _relative(g, w) < 1e-12


@pytest.mark.parametrize('batch, channels, side, path', [
    (2, 64, 4, 'unfold'), (2, 64, 1, 'unfold'), (1, 16, 16, 'unfold'), (2, 64, 8, None)])
def test_depthwise3x3_equals_conv2d_in_float32(batch, channels, side, path, path_taken):
    torch.manual_seed(0)
    conv = create_conv2d(channels, channels, 3, groups=channels)
    assert type(conv) is DepthwiseConv2d
    x = torch.randn(batch, channels, side, side, requires_grad=True)
    out = conv(x)
    assert path_taken == ([path] if path else [])
    expected = F.conv2d(x, conv.weight, None, 1, 1, 1, channels)
    grad = torch.randn_like(expected)
    got = torch.autograd.grad(out, (x, conv.weight), grad)
    want = torch.autograd.grad(expected, (x, conv.weight), grad)
    assert _relative(out, expected) < 1e-5
    for g, w in zip(got, want):
        assert _relative(g, w) < 1e-5


def test_channels_last_input_gives_channels_last_output():
    torch.manual_seed(0)
    x = torch.randn(2, 64, 4, 4).contiguous(memory_format=torch.channels_last)
    for conv in (PointwiseConv2d(64, 32, 1), PointwiseConv2d(1152, 1152, 1),
                 create_conv2d(64, 64, 3, groups=64)):
        x_in = x if conv.in_channels == 64 else torch.randn(2, 1152, 2, 2).contiguous(
            memory_format=torch.channels_last)
        assert small_conv2d(conv, x_in) is not None
        out = conv(x_in)
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert _relative(out, F.conv2d(x_in, conv.weight, conv.bias, 1, conv.padding, 1,
                                       conv.groups)) < 1e-5


def test_where_the_paths_do_not_apply():
    pointwise = PointwiseConv2d(8, 8, 1)
    x = torch.randn(1, 8, 4, 4)
    assert small_conv2d(pointwise, x) is not None
    with torch.no_grad():  # inference keeps oneDNN (outputs as exporters compute them)
        assert small_conv2d(pointwise, x) is None
    pointwise.requires_grad_(False)
    assert small_conv2d(pointwise, x) is None  # nothing to differentiate
    assert small_conv2d(pointwise, x.requires_grad_()) is not None
    pointwise.requires_grad_(True)
    assert small_conv2d(pointwise, x.to(torch.bfloat16)) is None  # half precision
    assert small_conv2d(pointwise, x.to('meta')) is None  # not a CPU tensor
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert small_conv2d(pointwise, x) is None
    strided = nn.Conv2d(8, 8, 1, stride=2)
    assert small_conv2d(strided, x) is None
    dense3x3 = nn.Conv2d(8, 8, 3, padding=1)
    assert small_conv2d(dense3x3, x) is None
    depthwise5x5 = nn.Conv2d(8, 8, 5, padding=2, groups=8)
    assert small_conv2d(depthwise5x5, x) is None
    previous = set_small_conv(False)
    try:
        assert small_conv2d(pointwise, x) is None
    finally:
        set_small_conv(previous)


def test_builders_use_the_pointwise_class_with_nn_conv2d_state():
    conv = create_conv2d(16, 32, 1, bias=True)
    assert type(conv) is PointwiseConv2d and isinstance(conv, nn.Conv2d)
    assert type(create_conv2d(16, 32, 1, stride=2)) is nn.Conv2d  # strided: oneDNN, as before
    assert type(create_conv2d(16, 32, 1, padding='same')) is PointwiseConv2d
    replan_conv2d(conv, 'same')
    assert type(conv) is PointwiseConv2d
    se = SqueezeExcite(32, 8)
    assert type(se.reduce) is PointwiseConv2d and type(se.expand) is PointwiseConv2d
    plain = nn.Conv2d(16, 32, 1, bias=True)
    assert set(conv.state_dict()) == set(plain.state_dict())
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 16, 3, 3)
    assert _relative(conv(x), plain(x)) < 1e-6


def test_backbone_and_bifpn_train_the_same_with_the_paths_off():
    """One training step of B0 + BiFPN on a 64 px batch (most convs small) with and without the
    paths, in float64: the same loss and gradients up to float summation order."""
    torch.manual_seed(0)
    backbone = EfficientNet('b0', out_indices=(2, 3, 4)).double()
    neck = BiFPN(backbone.feature_info.channels(), width=64, repeats=2).double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)

    def step():
        torch.manual_seed(1)  # the same drop-path draws
        backbone.zero_grad()
        neck.zero_grad()
        loss = sum(level.square().mean() for level in neck(backbone(x)))
        loss.backward()
        grads = [p.grad.clone() for p in [*backbone.parameters(), *neck.parameters()]
                 if p.grad is not None]
        return loss.detach(), grads

    loss_on, grads_on = step()
    previous = set_small_conv(False)
    try:
        loss_off, grads_off = step()
    finally:
        set_small_conv(previous)
    assert abs(float(loss_on - loss_off)) <= 1e-10 * abs(float(loss_off))
    assert len(grads_on) == len(grads_off)
    # biases right before a norm get a gradient that is zero up to rounding: compare every
    # tensor against the largest gradient
    scale = max(float(g.abs().max()) for g in grads_off)
    worst = max(float((a - b).abs().max()) for a, b in zip(grads_on, grads_off)) / scale
    assert worst < 1e-10
