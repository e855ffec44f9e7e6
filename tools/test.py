"""Evaluate a checkpoint on the config's test split: print a metrics table, write flat JSON.

    python tools/test.py CONFIG CHECKPOINT [--data-root DIR] [--out metrics.json]
        [--tta] [--sliding-window [--overlap 0.5]] [--largest-component]
        [--recompute-bn N [--bn-seed S] [--bn-deterministic]]
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
from pathlib import Path

from mmengine.config import DictAction

from tasks.engine import (apply_inference_options, metrics_table, prepare_test_config, test,
                          write_metrics_json)
from tasks.engine.inference_options import add_inference_arguments


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint',
                        help='checkpoint file, e.g. work_dirs/<config>/best_mDice_iter_N.pth')
    parser.add_argument('--data-root', help='dataset folder replacing the config\'s data_root')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--work-dir',
                        help='where the evaluation log goes (default: work_dirs/<config>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config keys')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--recompute-bn', type=int, metavar='N',
                        help='recompute the BatchNorm statistics over N training batches of the '
                             'config before testing (PreciseBN for a saved checkpoint)')
    parser.add_argument('--bn-seed', type=int, default=0,
                        help='seed of the --recompute-bn batch draw (default 0)')
    parser.add_argument('--bn-deterministic', action='store_true',
                        help='--recompute-bn with dropout and drop path off (the statistics of '
                             'the network that is evaluated)')
    add_inference_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Evaluate; returns the metrics dict."""
    args = parse_args(argv)
    cfg = prepare_test_config(args.config, args.checkpoint, work_dir=args.work_dir,
                              data_root=args.data_root, cfg_options=args.cfg_options,
                              launcher=args.launcher, recompute_bn=args.recompute_bn,
                              bn_seed=args.bn_seed, bn_deterministic=args.bn_deterministic)
    apply_inference_options(cfg, tta=args.tta, sliding_window=args.sliding_window,
                            overlap=args.overlap, largest_component=args.largest_component)
    metrics = test(cfg)
    print(metrics_table(metrics))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_metrics_json(metrics, args.out)
        print(f'metrics written to {args.out}')
    return metrics


if __name__ == '__main__':
    main()
