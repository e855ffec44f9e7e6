"""Progressive B0 -> B2 -> B4 training against B4 from scratch, at equal iterations and FLOPs.

    python tools/benchmark_growth.py --data-root DIR --out docs/transplant/growth_mni_tissue \
        --phases b0:96:0.5 b2:96:0.25 b4:128:0.25 --modes exact net2wider \
        --max-iters 200 --val-interval 25 --seeds 0 1 --batch-size 4

The reference is the last phase's variant trained from scratch at its crop for --max-iters
iterations. Each progressive candidate (one per --modes entry and --schedules entry) trains the
phases in the given shares: 'equal-iters' over the same iterations, 'equal-flops' over as many as
give the reference's training FLOPs. Every run is tools/train.py on the recipe (default
configs/grow/unet_progressive_b0_b4.py) in its own process; runs are kept in OUT_runs/ and a
rerun skips those done. Writes OUT.json, OUT.md (metric, FLOPs, share of the reference's FLOPs
spent to reach its final metric) and OUT.png (metric against iterations, seconds and FLOPs).
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import shlex
import sys
from pathlib import Path

from benchmarks.growth import RECIPE, SCHEDULES, parse_phase, run_growth_benchmark
from benchmarks.report import describe_machine
from benchmarks.training_runs import RunSettings


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=str(RECIPE), help='the progressive recipe')
    parser.add_argument('--data-root', required=True, help='the dataset folder')
    parser.add_argument('--out', type=Path, required=True, help='OUT stem: OUT.json, OUT.md, OUT.png')
    parser.add_argument('--phases', nargs='+', type=parse_phase,
                        default=[parse_phase(p) for p in ('b0:96:0.5', 'b2:96:0.25', 'b4:128:0.25')],
                        metavar='ARCH:CROP:SHARE', help='the progressive phases, in order')
    parser.add_argument('--modes', nargs='+', default=['exact', 'net2wider'],
                        choices=['exact', 'net2wider', 'plain'])
    parser.add_argument('--schedules', nargs='+', default=list(SCHEDULES), choices=SCHEDULES)
    parser.add_argument('--max-iters', type=int, default=200, help="the reference's iterations")
    parser.add_argument('--val-interval', type=int, default=25)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--workers', type=int, default=0, help='loader processes of every run')
    parser.add_argument('--rewarm', type=int, default=10, help='re-warm iterations per boundary')
    parser.add_argument('--metric', default='mFgDice')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='dotted overrides for every run (passed to tools/train.py)')
    parser.add_argument('--timeout', type=float, default=3600.0, help='seconds per run')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    workers = {f'{loader}.{key}': value for loader in ('train_dataloader', 'val_dataloader')
               for key, value in (('num_workers', args.workers),
                                  ('persistent_workers', args.workers > 0))}
    options = {'cpu_profile': None, 'train_dataloader.batch_size': args.batch_size, **workers,
               **dict(item.split('=', 1) for item in args.cfg_options)}
    settings = RunSettings(config=args.config, data_root=args.data_root, max_iters=args.max_iters,
                           val_interval=args.val_interval, seeds=tuple(args.seeds),
                           metric=args.metric, cfg_options=options, timeout_s=args.timeout)
    command = 'python tools/benchmark_growth.py ' + ' '.join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    phases = ' -> '.join(f'{p.arch} at {p.crop} px ({p.share:.0%})' for p in args.phases)
    header = (f'Progressive {phases} against {args.phases[-1].arch} from scratch on '
              f'{args.data_root}: {args.max_iters} reference iterations, batch {args.batch_size}, '
              f'validation every {args.val_interval}, seeds {list(args.seeds)}, '
              f'{describe_machine()}.\n\n`{command}`')
    rows = run_growth_benchmark(settings, args.phases, args.modes, args.schedules,
                                args.batch_size, args.rewarm, args.out, header)
    from effnet_backbones.profile import markdown_table
    print(markdown_table(rows))
    if any(row['failed'] for row in rows):
        sys.exit('some runs failed: see OUT_runs/<candidate>/seed<N>/train.log')


if __name__ == '__main__':
    main()
