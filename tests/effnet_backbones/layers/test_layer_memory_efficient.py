import pytest
import torch
import torch.nn as nn

from effnet_backbones import EfficientNet
from effnet_backbones.layers.memory_efficient import gate_project, norm_act


def saved_bytes(model, x):
    """Bytes of distinct storages autograd keeps for backward during ``model(x)``."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(x)
    return sum(storages.values()), out


def _pair(**options):
    torch.manual_seed(0)
    plain = EfficientNet('b0', **options).train()
    efficient = EfficientNet('b0', memory_efficient=True, **options).train()
    efficient.load_state_dict(plain.state_dict())
    return plain, efficient


def _assert_same_training_step(plain, efficient, x):
    outs = []
    for model in (plain, efficient):
        torch.manual_seed(1)  # same drop-path draws
        features = model(x)
        sum((f ** 2).mean() for f in features).backward()
        outs.append(features)
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for (name, a), b in zip(plain.named_parameters(), efficient.parameters()):
        if a.grad is None:
            assert b.grad is None, name
            continue
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5, msg=name)
    for (name, a), b in zip(plain.named_buffers(), efficient.buffers()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize('options', [
    dict(), dict(drop_path_rate=0.2, scse=True), dict(norm_layer='gn'), dict(norm_layer='frozenbn'),
    dict(act_layer='hardswish', padding='same'), dict(frozen_stages=2), dict(with_cp='block'),
    dict(with_cp='stage', output_stride=8),
], ids=str)
def test_same_outputs_gradients_and_statistics_as_the_plain_path(options):
    plain, efficient = _pair(**options)
    _assert_same_training_step(plain, efficient, torch.randn(2, 3, 96, 80))


def test_channels_last_memory_efficient_path():
    plain, efficient = _pair()
    plain = plain.to(memory_format=torch.channels_last)
    efficient = efficient.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last)
    _assert_same_training_step(plain, efficient, x)


def test_eval_and_no_grad_use_the_plain_path_with_identical_results(monkeypatch):
    import effnet_backbones.blocks as blocks
    import effnet_backbones.layers.conv as conv

    fused_calls = []
    for module, name in ((conv, 'norm_act'), (blocks, 'norm_act_conv'), (blocks, 'gate_project')):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, _f=original, _n=name: (
            fused_calls.append(_n), _f(*args))[1])
    plain, efficient = _pair()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # training mode, but no graph: nothing to save memory on
        for a, b in zip(plain(x), efficient(x)):
            assert torch.equal(a, b)
    plain.eval(), efficient.eval()
    for a, b in zip(plain(x), efficient(x)):  # eval mode with gradients: fused where it saves
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert fused_calls, 'the fused functions never ran'
    fused_calls.clear()
    with torch.no_grad():
        efficient(x)
    assert fused_calls == []


def test_saves_at_most_sixty_percent_of_the_plain_activations():
    plain, efficient = _pair()
    x = torch.randn(2, 3, 128, 128)
    plain_bytes, _ = saved_bytes(plain, x)
    efficient_bytes, _ = saved_bytes(efficient, x)
    assert efficient_bytes <= 0.6 * plain_bytes  # measured 0.567 for b0 at 128 px


def test_norm_act_function_matches_modules_for_batchnorm_in_train_and_eval():
    for training in (True, False):
        norm_a, norm_b = nn.BatchNorm2d(8).train(training), nn.BatchNorm2d(8).train(training)
        x = torch.randn(4, 8, 5, 5, requires_grad=True)
        y = torch.randn(4, 8, 5, 5)
        x2 = x.detach().clone().requires_grad_()
        (nn.functional.silu(norm_a(x)) * y).sum().backward()
        (norm_act(x2, norm_b, nn.functional.silu) * y).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad)
        torch.testing.assert_close(norm_a.weight.grad, norm_b.weight.grad)
        torch.testing.assert_close(norm_a.running_var, norm_b.running_var)


def test_gate_project_matches_plain_ops():
    x = torch.randn(2, 12, 6, 7, requires_grad=True)
    gate = torch.rand(2, 12, 1, 1, requires_grad=True)
    weight = torch.randn(5, 12, 1, 1, requires_grad=True)
    grad = torch.randn(2, 5, 6, 7)
    ref = nn.functional.conv2d(x * gate, weight)
    ref_grads = torch.autograd.grad(ref, (x, gate, weight), grad)
    out = gate_project(x, gate, weight)
    torch.testing.assert_close(out, ref)
    for a, b in zip(torch.autograd.grad(out, (x, gate, weight), grad), ref_grads):
        torch.testing.assert_close(a, b)


def test_syncbn_falls_back_to_the_plain_norm():
    model = EfficientNet('b0', norm_layer='syncbn', memory_efficient=True).train()
    assert model.stages[1][0].memory_efficient and not model.stem.fuses_norm_act()


def test_syncbn_converted_after_construction_trains_like_the_plain_path():
    # MMEngine's sync_bn='torch' converts the norms of a built model; the fused path must see the
    # live norm, or its backward runs SyncBN a second time (two statistics updates, and on GPUs
    # an extra all-reduce per layer). Without a process group SyncBN computes as BN on CPU.
    plain, efficient = _pair()
    plain = nn.SyncBatchNorm.convert_sync_batchnorm(plain)
    efficient = nn.SyncBatchNorm.convert_sync_batchnorm(efficient)
    assert isinstance(efficient.stem.norm, nn.SyncBatchNorm) and not efficient.stem.fuses_norm_act()
    _assert_same_training_step(plain, efficient, torch.randn(2, 3, 64, 64))
    assert efficient.stem.norm.num_batches_tracked.item() == 1


@pytest.mark.parametrize('memory_efficient', [False, True])
def test_bf16_autocast_trains_close_to_float32(memory_efficient):
    torch.manual_seed(0)
    model = EfficientNet('b0', memory_efficient=memory_efficient)
    reference = EfficientNet('b0')
    reference.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 96, 96)
    # forward in eval mode (running statistics): bf16 stays within a few percent
    model.eval(), reference.eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        low = model(x)
    with torch.no_grad():
        full = reference(x)
    for a, b in zip(low, full):
        assert a.dtype == torch.bfloat16
        assert (a.float() - b).abs().max() <= 0.05 * b.abs().max()
    # a training step under autocast: finite gradients pointing the float32 way
    model.train(), reference.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        sum(f.float().pow(2).mean() for f in model(x)).backward()
    sum(f.pow(2).mean() for f in reference(x)).backward()
    grad, ref = model.stem.conv.weight.grad, reference.stem.conv.weight.grad
    assert torch.isfinite(grad).all()
    assert torch.nn.functional.cosine_similarity(grad.flatten(), ref.flatten(), dim=0) > 0.9
