"""effnet_backbones.layers.checkpoint: recomputation that leaves BN statistics as without it."""
import copy

import pytest
import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from effnet_backbones.blocks import MBConv
from effnet_backbones.layers.checkpoint import checkpoint_module
from effnet_backbones.spec import build_plan

pytestmark = pytest.mark.usefixtures('one_thread')

STAT_NAMES = ('running_mean', 'running_var', 'num_batches_tracked')


def small_net(momentum):
    """conv-BN-SiLU-conv-BN with the given BN momentum (None: cumulative average)."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, momentum=momentum),
                         nn.SiLU(), nn.Conv2d(8, 4, 3, padding=1),
                         nn.BatchNorm2d(4, momentum=momentum))


def bn_statistics(module):
    """{buffer name: clone} of every BN running statistic in ``module``."""
    return {name: value.clone() for name, value in module.named_buffers()
            if name.rsplit('.', 1)[-1] in STAT_NAMES}


def training_steps(module, inputs, run):
    """Forward with ``run(module, x)`` and backward on each input.

    Returns (outputs, input gradients), one per input.
    """
    outputs, grads = [], []
    for x in inputs:
        x = x.clone().requires_grad_()
        out = run(module, x)
        (out ** 2).mean().backward()
        outputs.append(out.detach())
        grads.append(x.grad)
    return outputs, grads


def plain(module, x):
    """The module run without checkpointing."""
    return module(x)


def assert_same_training(reference, checkpointed, inputs, tol=1e-6):
    """Outputs, input and parameter gradients and BN statistics agree after the same steps."""
    ref_out, ref_grads = training_steps(reference, inputs, plain)
    cp_out, cp_grads = training_steps(checkpointed, inputs, checkpoint_module)
    for a, b in zip(ref_out + ref_grads, cp_out + cp_grads):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)
    for (name, a), b in zip(reference.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=tol, atol=tol, msg=name)
    expected, actual = bn_statistics(reference), bn_statistics(checkpointed)
    assert expected.keys() == actual.keys() and expected
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize('momentum', [0.1, None])
def test_same_outputs_gradients_and_statistics_as_without_checkpointing(momentum):
    reference = small_net(momentum).train()
    checkpointed = copy.deepcopy(reference)
    inputs = [torch.randn(2, 3, 8, 8) * 2 + 1, torch.randn(2, 3, 8, 8)]
    assert_same_training(reference, checkpointed, inputs)
    assert int(checkpointed[1].num_batches_tracked) == 2  # one update per forward


def test_plain_torch_checkpointing_would_update_statistics_twice():
    # the reason checkpoint_module exists, and proof that the comparison above can fail
    module = small_net(0.1).train()
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    checkpoint(module, x, use_reentrant=False).sum().backward()
    assert int(module[1].num_batches_tracked) == 2
    protected = small_net(0.1).train()
    checkpoint_module(protected, x).sum().backward()
    assert int(protected[1].num_batches_tracked) == 1


def test_an_mbconv_block_with_drop_path_recomputes_the_same_draws():
    spec = build_plan('b0', drop_path_rate=0.5).stages[5][3]  # 192 -> 192, stride 1: has a skip
    assert spec.drop_path > 0.3
    reference = MBConv(spec, nn.BatchNorm2d, nn.SiLU).train()
    checkpointed = copy.deepcopy(reference)
    inputs = [torch.randn(4, spec.in_channels, 4, 4)]
    torch.manual_seed(5)
    ref_out, ref_grads = training_steps(reference, inputs, plain)
    torch.manual_seed(5)
    cp_out, cp_grads = training_steps(checkpointed, inputs, checkpoint_module)
    torch.testing.assert_close(cp_out[0], ref_out[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cp_grads[0], ref_grads[0], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(reference.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=name)
    assert bn_statistics(reference).keys() == bn_statistics(checkpointed).keys()
    for name, value in bn_statistics(reference).items():
        torch.testing.assert_close(bn_statistics(checkpointed)[name], value, rtol=0, atol=0)


def test_norms_without_running_statistics_are_fine():
    module = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False),
                           nn.GroupNorm(2, 4)).train()
    reference = copy.deepcopy(module)
    x = torch.randn(2, 3, 4, 4)
    ref_out, ref_grads = training_steps(reference, [x], plain)
    out, grads = training_steps(module, [x], checkpoint_module)
    torch.testing.assert_close(out[0], ref_out[0])
    torch.testing.assert_close(grads[0], ref_grads[0])


def test_statistics_of_an_eval_mode_module_do_not_move():
    module = small_net(0.1).eval()
    before = bn_statistics(module)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    checkpoint_module(module, x).sum().backward()
    for name, value in bn_statistics(module).items():
        assert torch.equal(value, before[name]), name
    assert x.grad is not None
