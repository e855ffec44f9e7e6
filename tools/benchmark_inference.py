"""Dice and seconds of one checkpoint with and without sliding windows, TTA and largest-component
post-processing (every combination), on the config's test split.

    python tools/benchmark_inference.py CONFIG CHECKPOINT --data-root DIR --out docs/quality/x
        [--overlap 0.5] [--cfg-options KEY=VALUE ...]

Writes OUT.json (metrics and per-case Dice of every variant) and OUT.md (one row per variant:
mean foreground Dice, Dice per class, the change against whole-image prediction, test-loop
seconds and their ratio).
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
from pathlib import Path

from mmengine.config import DictAction

from benchmarks.inference_tricks import run_inference_benchmark
from benchmarks.report import describe_machine


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint')
    parser.add_argument('--data-root', help="dataset folder replacing the config's data_root")
    parser.add_argument('--out', type=Path, required=True, help='OUT stem: OUT.json, OUT.md')
    parser.add_argument('--overlap', type=float, default=0.5, help='sliding-window overlap')
    parser.add_argument('--work-dir', type=Path,
                        help='test logs (default: work_dirs/benchmark_inference/<OUT name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE')
    return parser.parse_args(argv)


def main(argv=None):
    """Run every variant; returns their results."""
    args = parse_args(argv)
    header = (f'`{args.config}`, checkpoint `{args.checkpoint}`, data `{args.data_root}`, '
              f'sliding-window overlap {args.overlap}; {describe_machine()}')
    results = run_inference_benchmark(args.config, args.checkpoint, args.out, args.data_root,
                                      args.overlap, cfg_options=args.cfg_options, header=header,
                                      work_dir=args.work_dir)
    print(args.out.with_suffix('.md').read_text())
    return results


if __name__ == '__main__':
    main()
