"""effnet_backbones.layers.drop_path: per-sample stochastic depth, as in timm and torchvision."""
import pytest
import torch
from timm.layers import drop_path as timm_drop_path
from torchvision.ops import stochastic_depth

from effnet_backbones.layers import DropPath

pytestmark = pytest.mark.usefixtures('one_thread')


def kept_samples(out, x, p):
    """Per sample: True if kept (scaled by 1 / (1 - p)), False if zeroed; fails on anything else."""
    flat_out, flat_x = out.flatten(1), x.flatten(1)
    zeroed = (flat_out == 0).all(1)
    kept = torch.isclose(flat_out, flat_x / (1 - p), rtol=1e-6, atol=0).all(1)
    assert (zeroed ^ kept).all(), 'a sample was partly dropped or wrongly scaled'
    return kept


def test_identity_in_eval_and_with_zero_rate():
    x = torch.randn(4, 3, 5, 5)
    assert DropPath(0.5).eval()(x) is x
    assert DropPath(0.0).train()(x) is x


@pytest.mark.parametrize('p', [0.1, 0.3, 0.8])
def test_training_drops_whole_samples_at_the_rate_and_scales_the_rest(p):
    samples = 20000
    x = torch.randn(samples, 2, 3, 3) + 3.0  # no exact zeros in the input
    torch.manual_seed(2024)
    out = DropPath(p).train()(x)
    keep_rate = kept_samples(out, x, p).float().mean().item()
    # binomial standard error sqrt(p(1-p)/n) <= 0.0036: 5 of them
    assert keep_rate == pytest.approx(1 - p, abs=0.018)


def test_expectation_is_preserved():
    x = torch.randn(1, 4, 2, 2).expand(40000, 4, 2, 2).contiguous()
    torch.manual_seed(7)
    out = DropPath(0.25).train()(x)
    # mean of 40000 draws of x * Bernoulli(0.75) / 0.75: relative std 0.58 / sqrt(40000) = 0.3%
    torch.testing.assert_close(out.mean(0), x[0], rtol=0.015, atol=0.015)


@pytest.mark.parametrize('p', [0.2, 0.5])
def test_same_draws_as_timm_and_torchvision(p):
    x = torch.randn(64, 3, 4, 4)
    torch.manual_seed(11)
    ours = DropPath(p).train()(x)
    torch.manual_seed(11)
    timm_out = timm_drop_path(x, p, training=True)
    torch.manual_seed(11)
    torchvision_out = stochastic_depth(x, p, 'row', training=True)
    assert torch.equal(ours, timm_out) and torch.equal(ours, torchvision_out)
    kept = kept_samples(ours, x, p)
    assert 0 < kept.sum() < 64


def test_gradient_follows_the_mask():
    x = torch.randn(32, 3, 2, 2, requires_grad=True)
    torch.manual_seed(3)
    out = DropPath(0.5).train()(x)
    out.sum().backward()
    kept = kept_samples(out.detach(), x.detach(), 0.5)
    expected = kept.float().view(-1, 1, 1, 1).expand_as(x) / 0.5
    torch.testing.assert_close(x.grad, expected)


def test_works_for_any_rank_and_shows_its_rate():
    x = torch.randn(200, 7)
    torch.manual_seed(5)
    kept = kept_samples(DropPath(0.5).train()(x), x, 0.5)
    assert 0 < kept.sum() < 200
    assert repr(DropPath(0.125)) == 'DropPath(p=0.1250)'


def test_rate_one_drops_everything():
    x = torch.randn(4, 3, 2, 2)
    out = DropPath(1.0).train()(x)
    assert torch.equal(out, torch.zeros_like(x))


@pytest.mark.parametrize('p', [-0.1, 1.5, True, 'half'])
def test_probabilities_outside_zero_to_one_are_refused(p):
    with pytest.raises(ValueError, match=r'drop path probability must be in \[0, 1\], got'):
        DropPath(p)
