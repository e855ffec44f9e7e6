"""What DDP computes with plain BatchNorm (the default norm), measured on CPU with 2 ranks.

With plain BN each rank normalises with the statistics of its own samples; DDP then averages the
gradients, and (``broadcast_buffers=True``) copies rank 0's buffers to every rank before the next
forward. So 2 ranks x batch 1 equal the *average of two single-sample steps*, not one step on a
batch of 2: exact equality with one process needs SyncBN (``norm_layer='syncbn'`` or MMEngine's
``sync_bn='torch'``), which torch runs on GPUs only; the GroupNorm case is test_distributed.py.
"""
import sys
from pathlib import Path

import pytest
import torch

from calibration import assert_close_relative, relative_error

sys.path.insert(0, str(Path(__file__).parent))
from ddp_bn_worker import loss_of, model_and_batch, run_two_ranks  # noqa: E402


@pytest.fixture(scope='module')
def ddp_step(tmp_path_factory):
    return run_two_ranks(tmp_path_factory.mktemp('ddp_bn') / 'rank0.pt')


def single_process_step(samples):
    """(gradients, buffers) of one step of the shared model on ``samples`` of the batch."""
    model, batch = model_and_batch()
    loss_of(model(batch[samples])).backward()
    return ({name: p.grad for name, p in model.named_parameters()}, dict(model.named_buffers()))


def test_gradients_are_the_average_of_per_rank_steps_with_per_rank_statistics(ddp_step):
    per_rank = [single_process_step(slice(rank, rank + 1))[0] for rank in (0, 1)]
    expected = {name: (per_rank[0][name] + per_rank[1][name]) / 2 for name in per_rank[0]}
    actual = ddp_step['grads']
    # all gradients as one vector, then each tensor that is not analytically zero (a BN bias
    # feeding another BN through a 1x1 conv gets ~1e-8 of round-off); 1e-4: the ranks run one
    # thread each, the reference two (another summation order)
    assert_close_relative(torch.cat([g.flatten() for g in actual.values()]),
                          torch.cat([expected[name].flatten() for name in actual]), rtol=1e-4)
    largest = max(g.norm() for g in expected.values())
    significant = [name for name, g in expected.items() if g.norm() > 1e-4 * largest]
    assert len(significant) > len(expected) // 2  # measured: 129 of 208
    # per tensor 1e-3: deep layers normalise 2x2 maps of one sample, an ill-conditioned step
    # (measured up to 6.6e-4); the whole-batch step differs by more than 1e-2
    assert_close_relative([actual[name] for name in significant],
                          [expected[name] for name in significant], rtol=1e-3)


def test_they_differ_from_one_process_on_the_whole_batch(ddp_step):
    whole, _ = single_process_step(slice(0, 2))
    # BN over 2 samples is not the mean of BN over each: the stem's gradient moves by far more
    # than round-off, which is why equality needs SyncBN
    assert relative_error(ddp_step['grads']['stem.conv.weight'], whole['stem.conv.weight']) > 1e-2


def layer_statistics(buffers):
    """Per BN layer, its running mean and variance as one vector (the variance sets the scale:
    a mean of ~1e-8 alone would make a relative comparison meaningless)."""
    return [torch.cat([buffers[f'{layer}.running_mean'], buffers[f'{layer}.running_var']])
            for layer in sorted(name[:-len('.running_mean')] for name in buffers
                                if name.endswith('.running_mean'))]


def test_running_statistics_are_rank_zeros_own(ddp_step):
    rank0, rank1 = (single_process_step(slice(rank, rank + 1))[1] for rank in (0, 1))
    assert_close_relative(layer_statistics(ddp_step['buffers']), layer_statistics(rank0),
                          rtol=1e-4)
    assert relative_error(torch.cat(layer_statistics(ddp_step['buffers'])),
                          torch.cat(layer_statistics(rank1))) > 1e-3  # not rank 1's, not shared
    assert int(ddp_step['buffers']['stem.norm.num_batches_tracked']) == 1
