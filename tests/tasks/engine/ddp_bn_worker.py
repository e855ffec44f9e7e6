"""One DDP training step of a BatchNorm EfficientNet on CPU (gloo), run by torchrun from
test_ddp_batchnorm.py: rank r trains on sample r of a fixed batch; rank 0 saves what DDP left in
its model (gradients, running statistics) to the file given as the only argument."""
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from effnet_backbones import EfficientNet


def model_and_batch():
    """The model every rank (and the single-process reference) starts from, and the batch."""
    torch.manual_seed(0)
    model = EfficientNet('b0', out_indices=(2, 4)).train()
    batch = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return model, batch


def loss_of(taps):
    """A loss that reads every tap."""
    return sum(tap.pow(2).mean() for tap in taps)


def main(out: str) -> None:
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    model, batch = model_and_batch()
    ddp = DistributedDataParallel(model)  # broadcast_buffers=True, as MMEngine's wrapper
    loss_of(ddp(batch[rank:rank + 1])).backward()
    if rank == 0:
        torch.save({'grads': {name: p.grad for name, p in model.named_parameters()},
                    'buffers': dict(model.named_buffers())}, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
