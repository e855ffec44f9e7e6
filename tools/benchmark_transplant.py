"""Measure what transplanting buys: validation Dice against iterations for a U-Net grown from a
trained smaller one, versus the same model from random init (and from ImageNet init if reachable).

    python tools/benchmark_transplant.py                       # demo nuclei data, B0 -> B2
    python tools/benchmark_transplant.py --arch b4 --iters 600 --data-root DIR --imagenet

Writes ``OUT.json`` (every point), ``OUT.png`` (the plot) and prints a Markdown table for
docs/transplant.md; the runs themselves are described in benchmarks/transplant.py.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse

from benchmarks.transplant import TransplantBenchSettings, run_transplant_benchmark

DEFAULTS = TransplantBenchSettings()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', help='dataset folder (default: the demo nuclei data)')
    parser.add_argument('--src-arch', default=DEFAULTS.src_arch,
                        help='the small variant trained first')
    parser.add_argument('--arch', default=DEFAULTS.arch, help='the larger variant compared')
    parser.add_argument('--src-iters', type=int, default=DEFAULTS.src_iters,
                        help='training of the small model')
    parser.add_argument('--iters', type=int, default=DEFAULTS.iters,
                        help='budget of each larger run')
    parser.add_argument('--val-interval', type=int, default=DEFAULTS.val_interval)
    parser.add_argument('--batch-size', type=int, default=DEFAULTS.batch_size)
    parser.add_argument('--crop', type=int, help='crop size of every run (default: each '
                                                 "variant's own resolution)")
    parser.add_argument('--lr', type=float, help='peak learning rate of the larger runs '
                                                 '(default: the recipe\'s first stage, 1e-3)')
    parser.add_argument('--imagenet', action='store_true',
                        help='also run from ImageNet weights (torchvision, needs them downloaded)')
    parser.add_argument('--work-dir', default=DEFAULTS.work_dir)
    parser.add_argument('--out', default=DEFAULTS.out, help='stem of .json / .png')
    return parser.parse_args(argv)


def main(argv=None):
    """Run the comparison; returns label -> [[iteration, Dice], ...] of each larger run."""
    return run_transplant_benchmark(TransplantBenchSettings(**vars(parse_args(argv))))


if __name__ == '__main__':
    main()
