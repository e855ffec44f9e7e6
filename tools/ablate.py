"""Train a recipe under combinations of switches (same budget, same seeds); one table, one plot.

    python tools/ablate.py configs/unet_effb4_medical.py --data-root DIR \
        --grid model.encoder_options.shortcut=None,resnet_d \
        --grid model.encoder_options.zero_init_residual=False,True \
        --max-iters 200 --val-interval 25 --seeds 0 1 --out docs/ablations/mri_b4

Values are Python literals (None, True, 0.2, (1, 2)); bare words are strings. Grid values go into
the recipe before --max-iters stretches its schedule, so iteration counts in them (a scheduler's
``begin``/``end``) are in the recipe's own iterations; --cfg-options apply after. --mode grid (default)
trains every combination, --mode each the default (first values) and one change at a time, and
each --combo adds one variant of several changes together. Runs go
one after another into OUT_runs/; an interrupted ablation resumes where it stopped when rerun.
Writes OUT.json, OUT.md (with the seconds and iterations each variant needs to reach the
default's final metric) and OUT.png.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import shlex
import sys
from pathlib import Path

from benchmarks.ablation import (ABLATION_MODES, ablation_variants, combination_variant,
                                 parse_switch)
from benchmarks.report import describe_machine
from benchmarks.training_runs import RunSettings, run_series, summarize_runs, write_series_results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--grid', action='append', required=True, metavar='KEY=V1,V2',
                        help='a switch and its values (repeat for more switches)')
    parser.add_argument('--mode', choices=ABLATION_MODES, default='grid')
    parser.add_argument('--combo', action='append', default=[], metavar='KEY=V+KEY=V',
                        help="an extra variant combining switches (e.g. after --mode each: "
                             "'custom_hooks=precise_bn+shortcut=resnet_d'); others at their "
                             'first value')
    parser.add_argument('--combos-only', action='store_true',
                        help='train the default (first values) and the --combo variants only')
    parser.add_argument('--max-iters', type=int, default=200)
    parser.add_argument('--val-interval', type=int, default=25)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--metric', default='mFgDice')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='dotted overrides for every run (passed to tools/train.py)')
    parser.add_argument('--out', type=Path, required=True, help='OUT stem')
    parser.add_argument('--timeout', type=float, default=3600.0, help='seconds per run')
    args = parser.parse_args(argv)
    try:
        args.switches = [parse_switch(item) for item in args.grid]
        args.combos = [combination_variant(args.switches, item) for item in args.combo]
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    variants = ablation_variants(args.switches, args.mode)
    variants = (variants[:1] if args.combos_only else variants) + args.combos
    settings = RunSettings(config=args.config, data_root=args.data_root, max_iters=args.max_iters,
                           val_interval=args.val_interval, seeds=tuple(args.seeds),
                           metric=args.metric,
                           cfg_options=dict(item.split('=', 1) for item in args.cfg_options),
                           timeout_s=args.timeout)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    results = run_series(variants, settings, out.parent / f'{out.name}_runs')
    # the first variant is the default in 'each' mode and every switch's first value in a grid
    reference = variants[0].name
    rows = summarize_runs(results, args.metric, reference=reference)
    command = 'python tools/ablate.py ' + ' '.join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    header = (f'{Path(args.config).name} on {args.data_root}: {args.max_iters} iterations, '
              f'seeds {list(args.seeds)}, {describe_machine()}. Reference for reach_ref: '
              f'{variants[0].name}.\n\n`{command}`')
    print(write_series_results(out, header, settings, rows, results))
    if any(row['failed'] for row in rows):
        sys.exit('some runs failed: see OUT_runs/<variant>/seed<N>/train.log')


if __name__ == '__main__':
    main()
