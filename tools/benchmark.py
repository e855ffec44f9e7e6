"""Benchmark training/inference speed and peak memory of our backbones against timm, torchvision, smp.

    python tools/benchmark.py ours:b0 ours:b0+me ours:b0+cp timm:b0 timm_tf:b0 tv:b0 \
        --batch 8 --resolution 256 --baseline timm:b0 --out docs/bench/b0_cpu
Candidates: see benchmarks/candidates.py; NAME@lean measures NAME with the fixed malloc
thresholds of cpu_allocator='lean' (peak RSS follows live memory) instead of glibc's dynamic ones.
--bandwidth also profiles two eager steps per candidate: its element-wise operators' time, least
traffic, effective GB/s and share of the machine's copy bandwidth (benchmarks/bandwidth.py).
Writes OUT.json, OUT.md and OUT.png.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import sys

import torch

from benchmarks.candidates import parse_candidate
from benchmarks.report import (add_bandwidth_share, add_hardware_share, add_ratios,
                               elementwise_breakdown, format_markdown, settings_header,
                               write_results)
from benchmarks.speed import (BenchSettings, check_bandwidth_settings, measure_peak_bandwidth,
                              measure_peak_gflops, run_benchmark, split_allocator)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('candidates', nargs='+', help='e.g. ours:b4 ours:b4+me timm:b4 tv:b4')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--resolution', type=int, default=256)
    parser.add_argument('--mode', choices=('train', 'infer'), default='train')
    parser.add_argument('--dtype', choices=('float32', 'bfloat16', 'float16'), default='float32')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--compile', action='store_true')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--bandwidth', action='store_true',
                        help="profile two steps: element-wise operators' share of memory bandwidth")
    parser.add_argument('--baseline', default=None, help='candidate the ratios refer to (default: first)')
    parser.add_argument('--out', default=None, help='write OUT.json, OUT.md and OUT.png')
    args = parser.parse_args(argv)
    try:
        for name in args.candidates:
            parse_candidate(split_allocator(name)[0])
    except ValueError as err:
        parser.error(str(err))
    try:
        check_bandwidth_settings(BenchSettings(compile=args.compile, bandwidth=args.bandwidth))
    except ValueError as err:
        parser.error(str(err))
    if args.baseline is not None and args.baseline not in args.candidates:
        parser.error(f'--baseline {args.baseline!r} is not among the candidates {args.candidates}')
    return args


def _machine_peak(measure_peak, settings: BenchSettings):
    """The machine's peak by ``measure_peak`` (a worker process); None, said on stderr, if that
    worker fails: the candidates' table is written without the share columns."""
    try:
        return measure_peak(settings)
    except RuntimeError as err:
        print(f'{measure_peak.__name__} failed, no share columns:\n{err}', file=sys.stderr)
        return None


def main(argv=None) -> None:
    args = parse_args(argv)
    settings = BenchSettings(batch=args.batch, resolution=args.resolution, mode=args.mode,
                             dtype=args.dtype, channels_last=args.channels_last,
                             compile=args.compile, device=args.device, warmup=args.warmup,
                             steps=args.steps, threads=args.threads, bandwidth=args.bandwidth)
    runs = {}
    rows = run_benchmark(args.candidates, settings, rounds=args.rounds,
                         log=lambda line: print(line, file=sys.stderr), runs_out=runs)
    rows = add_ratios(rows, args.baseline or args.candidates[0])
    peak = _machine_peak(measure_peak_gflops, settings)  # the hardware share of each step
    if peak:
        rows = add_hardware_share(rows, peak, settings)
    peak_gb_s = _machine_peak(measure_peak_bandwidth, settings) if args.bandwidth else None
    breakdown = None
    if peak_gb_s:
        rows = add_bandwidth_share(rows, peak_gb_s)
        breakdown = elementwise_breakdown(runs)
    header = settings_header(settings, args.rounds, peak, peak_gb_s)
    print(header + '\n\n' + format_markdown(rows))
    if breakdown:
        print('\n' + format_markdown(breakdown))
    if args.out:
        write_results(args.out, rows, settings, header, ' '.join(sys.argv), breakdown)
    failed = [row['name'] for row in rows if 'failed' in row]
    if failed:  # the table is written; the exit status still says it is incomplete
        sys.exit(f'failed: {", ".join(failed)} (their errors are in the log above)')


if __name__ == '__main__':
    main()
