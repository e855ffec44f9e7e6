"""Train a model from an MMEngine config (any task of this project).

    python tools/train.py configs/unet_effb4_medical.py
    python tools/train.py CONFIG [--work-dir DIR] [--data-root DIR] [--max-iters N]
                                 [--resume [CKPT]] [--amp] [--cfg-options KEY=VALUE ...]
                                 [--launcher none|pytorch] [--compile [MEMORY_BUDGET]]
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import os

from mmengine.config import DictAction

from tasks.engine import prepare_train_config, train


def _budget(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r}: expected a memory budget in [0, 1]') from None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file, e.g. configs/unet_effb4_medical.py')
    parser.add_argument('--work-dir',
                        help='logs and checkpoints (default: work_dirs/<config name>)')
    parser.add_argument('--data-root', help='dataset folder replacing the config\'s data_root')
    parser.add_argument('--max-iters', type=int,
                        help='run length; the schedule, validation and checkpoint intervals '
                             'scale with it')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CKPT',
                        help='continue from the work dir\'s last checkpoint, or from CKPT')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (bf16, else fp16) on CUDA; float32 with a '
                             'warning on CPU')
    parser.add_argument('--compile', nargs='?', const=True, type=_budget, metavar='MEMORY_BUDGET',
                        help='torch.compile the model; with a number in [0, 1] the compiled '
                             'step keeps at most that share of the default saved activations '
                             '(0.5: about half; docs/benchmarks.md)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config keys, e.g. train_dataloader.batch_size=4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='distributed launcher (use with torchrun for pytorch)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    """Train; returns the MMEngine runner."""
    args = parse_args(argv)
    cfg = prepare_train_config(args.config, work_dir=args.work_dir, data_root=args.data_root,
                               max_iters=args.max_iters, resume=args.resume, amp=args.amp,
                               cfg_options=args.cfg_options, launcher=args.launcher,
                               compile=args.compile)
    return train(cfg)


if __name__ == '__main__':
    main()
