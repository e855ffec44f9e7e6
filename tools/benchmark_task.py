"""Train several models on one dataset with one recipe; compare validation metric, time, memory.

    python tools/benchmark_task.py configs/unet_effb4_medical.py --data-root DIR \
        --candidates recipe ours-b0 smp-resnet34 monai-efficientnet-b4 \
        --max-iters 200 --val-interval 25 --seeds 0 1 --out docs/quality/mri
    python tools/benchmark_task.py --list

Every candidate is the recipe (config) with only its network swapped (benchmarks/task.py lists
them); each (candidate, seed) trains in its own process with tools/train.py. Writes OUT.json,
OUT.md and OUT.png (metric against iterations and against training seconds); runs are kept in
OUT_runs/ and a rerun skips those already done.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import shlex
import sys
from pathlib import Path

from benchmarks.report import describe_machine
from benchmarks.task import CANDIDATES, run_task_benchmark
from benchmarks.training_runs import RunSettings

DEFAULT_METRIC = {'segmentation': 'mFgDice', 'detection': 'coco/bbox_mAP'}
PER_CLASS = {'segmentation': 'Dice.', 'detection': 'coco/bbox_mAP_50'}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='the recipe, e.g. configs/unet_effb4_medical.py')
    parser.add_argument('--data-root', help='the dataset folder')
    parser.add_argument('--task', choices=sorted(CANDIDATES), help="default: the config's `task`")
    parser.add_argument('--candidates', nargs='+', default=['recipe'])
    parser.add_argument('--max-iters', type=int, default=200)
    parser.add_argument('--val-interval', type=int, default=25)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--metric', help='default: mFgDice (segmentation), coco/bbox_mAP')
    parser.add_argument('--reference', help='candidate whose final metric the others must reach '
                                            '(adds the time and iterations to reach it)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='dotted overrides for every run (passed to tools/train.py)')
    parser.add_argument('--out', type=Path, help='OUT stem: OUT.json, OUT.md, OUT.png')
    parser.add_argument('--timeout', type=float, default=3600.0, help='seconds per run')
    parser.add_argument('--list', action='store_true', help='print the candidates and exit')
    args = parser.parse_args(argv)
    if not args.list and not (args.config and args.data_root and args.out):
        parser.error('config, --data-root and --out are required (or --list)')
    return args


def config_task(config: str) -> str:
    """The config's ``task`` ('segmentation' or 'detection')."""
    from mmengine.config import Config
    task = Config.fromfile(config).get('task')
    if task not in CANDIDATES:
        raise SystemExit(f'{config}: task is {task!r}; give --task {"|".join(CANDIDATES)}')
    return task


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.list:
        for task, table in CANDIDATES.items():
            print(f'{task}: {" ".join(table)}')
        return
    task = args.task or config_task(args.config)
    options = dict(item.split('=', 1) for item in args.cfg_options)
    settings = RunSettings(config=args.config, data_root=args.data_root, max_iters=args.max_iters,
                           val_interval=args.val_interval, seeds=tuple(args.seeds),
                           metric=args.metric or DEFAULT_METRIC[task], cfg_options=options,
                           timeout_s=args.timeout)
    command = 'python tools/benchmark_task.py ' + ' '.join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    header = (f'{Path(args.config).name} on {args.data_root}: {args.max_iters} iterations, '
              f'validation every {args.val_interval}, seeds {list(args.seeds)}, '
              f'{describe_machine()}.\n\n`{command}`')
    rows = run_task_benchmark(task, args.candidates, settings, args.out, args.reference,
                              PER_CLASS[task] if task == 'segmentation' else None, header)
    from effnet_backbones.profile import markdown_table
    print(markdown_table(rows))
    if any(row['failed'] for row in rows):
        sys.exit('some runs failed: see OUT_runs/<candidate>/seed<N>/train.log')


if __name__ == '__main__':
    main()
