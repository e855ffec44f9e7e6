"""The fused custom operators: equal to the plain layers, registered correctly, kept by compile."""
import copy

import pytest
import torch
import torch._dynamo as dynamo
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import FrozenBatchNorm2d

from effnet_backbones import EfficientNet
from effnet_backbones.layers.conv import create_conv2d
from effnet_backbones.layers.fused_ops import (gate_project_op, norm_act_conv_op, norm_act_op,
                                               supports_fused_op)

from test_layer_memory_efficient import saved_bytes


@torch.no_grad()
def _relative(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _norm_pair(kind, training):
    torch.manual_seed(0)
    norm = FrozenBatchNorm2d(6) if kind == 'frozen' else nn.BatchNorm2d(6)
    with torch.no_grad():  # away from the init values, so a dropped term shows
        norm.weight.copy_(torch.rand(6) + 0.5)
        norm.bias.copy_(torch.randn(6))
        norm.running_mean.copy_(torch.randn(6))
        norm.running_var.copy_(torch.rand(6) + 0.5)
    twin = FrozenBatchNorm2d(6) if kind == 'frozen' else nn.BatchNorm2d(6)
    twin.load_state_dict(norm.state_dict())
    return norm.train(training), twin.train(training)


CASES = [('bn', True, nn.SiLU), ('bn', False, nn.SiLU), ('bn', True, nn.ReLU6),
         ('bn', True, nn.Hardswish), ('bn', True, nn.ReLU), ('frozen', True, nn.SiLU)]


@pytest.mark.parametrize('groups', [1, 6])  # 6: depthwise, as in every MBConv
@pytest.mark.parametrize('padding', ['symmetric', 'same'])
@pytest.mark.parametrize('kind,training,act_type', CASES)
def test_norm_act_conv_equals_the_plain_layers(kind, training, act_type, padding, groups):
    plain_norm, fused_norm = _norm_pair(kind, training)
    act = act_type()
    assert supports_fused_op(fused_norm, act)
    out_channels = 5 if groups == 1 else 6
    # 'same' at stride 2: Conv2dSame, padding 0 before and 1 after on the odd side
    conv = create_conv2d(6, out_channels, 3, stride=2, groups=groups, padding=padding)
    x = torch.randn(2, 6, 11, 9) * 2
    grad = torch.randn(2, out_channels, 6, 5)
    results = []
    for norm, fused in ((plain_norm, False), (fused_norm, True)):
        leaf = x.clone().requires_grad_()
        out = norm_act_conv_op(leaf, norm, act, conv) if fused else conv(act(norm(leaf)))
        params = [leaf, conv.weight] + [p for p in norm.parameters()]
        results.append((out, torch.autograd.grad(out, params, grad)))
    (plain_out, plain_grads), (fused_out, fused_grads) = results
    assert _relative(fused_out, plain_out) < 1e-5
    for a, b in zip(plain_grads, fused_grads):
        assert _relative(b, a) < 1e-5
    assert torch.equal(plain_norm.running_mean, fused_norm.running_mean)
    assert torch.equal(plain_norm.running_var, fused_norm.running_var)
    if kind == 'bn':
        assert int(plain_norm.num_batches_tracked) == int(fused_norm.num_batches_tracked)


@pytest.mark.parametrize('kind,training,act_type', CASES[:3])
def test_norm_act_equals_the_plain_layers(kind, training, act_type):
    plain_norm, fused_norm = _norm_pair(kind, training)
    act = act_type()
    x = torch.randn(3, 6, 7, 5)
    results = []
    for norm, fused in ((plain_norm, False), (fused_norm, True)):
        leaf = x.clone().requires_grad_()
        out = norm_act_op(leaf, norm, act) if fused else act(norm(leaf))
        results.append((out, torch.autograd.grad(out.pow(2).sum(), [leaf, *norm.parameters()])))
    assert _relative(results[1][0], results[0][0]) < 1e-5
    for a, b in zip(results[0][1], results[1][1]):
        assert _relative(b, a) < 1e-5
    assert torch.equal(plain_norm.running_var, fused_norm.running_var)


def test_gate_project_equals_the_plain_product():
    x, gate = torch.randn(2, 6, 7, 7), torch.rand(2, 6, 1, 1)
    weight = torch.randn(4, 6, 1, 1)
    grads = []
    for fused in (False, True):
        leaves = [t.clone().requires_grad_() for t in (x, gate, weight)]
        out = gate_project_op(*leaves) if fused else F.conv2d(leaves[0] * leaves[1], leaves[2])
        grads.append(torch.autograd.grad(out.pow(2).sum(), leaves))
    for a, b in zip(*grads):
        assert _relative(b, a) < 1e-6


def test_unsupported_pairs_are_named():
    assert not supports_fused_op(nn.GroupNorm(2, 6), nn.SiLU())
    assert not supports_fused_op(nn.BatchNorm2d(6), nn.GELU())
    assert not supports_fused_op(nn.BatchNorm2d(6, affine=False), nn.SiLU())


def test_operators_pass_opcheck():
    # schema, fake (meta) kernels and autograd registration, as torch.compile relies on them
    norm = nn.BatchNorm2d(4).train()
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    conv_weight = torch.randn(4, 1, 3, 3, requires_grad=True)
    weight = norm.weight.detach().clone().requires_grad_()
    bias = norm.bias.detach().clone().requires_grad_()
    stats = (norm.running_mean.clone(), norm.running_var.clone())
    ops = torch.ops.effnet_backbones
    torch.library.opcheck(ops.norm_act, (x, weight, bias, *stats, True, 0.1, 1e-5, 'silu'))
    torch.library.opcheck(ops.norm_act_conv, (x, weight, bias, *stats, conv_weight, [2, 2],
                                              [0, 0], [0, 1, 0, 1], [1, 1], 4, True, 0.1, 1e-5,
                                              'silu'))
    torch.library.opcheck(ops.gate_project, (x, torch.rand(2, 4, 1, 1, requires_grad=True),
                                             torch.randn(3, 4, 1, 1, requires_grad=True)))


@pytest.fixture
def _fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


def test_compiled_memory_efficient_backbone_keeps_the_saving_and_equals_eager_plain(_fresh_dynamo):
    torch.manual_seed(0)
    plain = EfficientNet('b0', drop_path_rate=0.0).train()
    efficient = EfficientNet('b0', drop_path_rate=0.0, memory_efficient=True).train()
    start = copy.deepcopy(plain.state_dict())
    x = torch.randn(2, 3, 64, 96)
    explanation = dynamo.explain(efficient)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    dynamo.reset()
    # aot_eager runs AOTAutograd's joint graph and partitioner (what decides the saved tensors)
    # without inductor's code generation, which would take minutes here
    compiled = torch.compile(efficient, backend='aot_eager')
    compiled(x)
    compiled_saved, _ = saved_bytes(compiled, x)
    eager_saved, _ = saved_bytes(efficient, x)
    plain_saved, _ = saved_bytes(plain, x)
    assert compiled_saved == eager_saved < 0.7 * plain_saved
    for model in (plain, efficient):  # the passes above moved the BN running statistics
        model.load_state_dict(start)
    outs = []
    for model in (plain, compiled):
        features = model(x)
        sum(f.pow(2).mean() for f in features).backward()
        outs.append(features)
    for a, b in zip(*outs):
        assert _relative(b, a) < 1e-5
    for (name, a), b in zip(plain.named_parameters(), efficient.parameters()):
        assert _relative(b.grad, a.grad) < 1e-5, name
    for (name, a), b in zip(plain.named_buffers(), efficient.buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-7), name
