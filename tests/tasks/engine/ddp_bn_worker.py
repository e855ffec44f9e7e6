"""One DDP training step of a BatchNorm EfficientNet (gloo), run by torchrun from
test_ddp_batchnorm.py (CPU, plain BN) and test_ddp_syncbn.py (``--syncbn``: SyncBN on the GPU,
every rank on cuda:0, so that one GPU checks it): rank r trains on sample r of a fixed batch;
rank 0 saves what DDP left in its model (gradients, running statistics) to the file given as the
first argument. ``--memory-efficient`` builds the fused path and converts its norms afterwards,
as MMEngine's ``sync_bn='torch'`` does."""
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from effnet_backbones import EfficientNet


def model_and_batch(memory_efficient: bool = False):
    """The model every rank (and the single-process reference) starts from, and the batch."""
    torch.manual_seed(0)
    model = EfficientNet('b0', out_indices=(2, 4), memory_efficient=memory_efficient).train()
    batch = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return model, batch


def loss_of(taps):
    """A loss that reads every tap."""
    return sum(tap.pow(2).mean() for tap in taps)


def run_two_ranks(out: Path, *flags: str) -> dict:
    """Run this worker as 2 ranks under torchrun (``flags``: ``--syncbn``,
    ``--memory-efficient``) and return what rank 0 saved to ``out``."""
    from tool_loader import free_port  # the tests' helper: on the path in the test process
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', __file__, str(out), *flags],
        capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return torch.load(out, weights_only=True)


def main(out: str, syncbn: bool = False, memory_efficient: bool = False) -> None:
    # gloo on every rank: NCCL refuses two ranks on one GPU, and gloo carries CUDA tensors
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    model, batch = model_and_batch(memory_efficient)
    if syncbn:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model).cuda()
        batch = batch.cuda()
    ddp = DistributedDataParallel(model)  # broadcast_buffers=True, as MMEngine's wrapper
    loss_of(ddp(batch[rank:rank + 1])).backward()
    if rank == 0:
        torch.save({'grads': {name: p.grad.cpu() for name, p in model.named_parameters()},
                    'buffers': {name: b.cpu() for name, b in model.named_buffers()}}, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1], syncbn='--syncbn' in sys.argv,
         memory_efficient='--memory-efficient' in sys.argv)
