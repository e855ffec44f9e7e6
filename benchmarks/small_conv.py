"""Time the small-map convolution formulations against oneDNN, one layer at a time.

    python -m benchmarks.small_conv --out docs/bench/small_conv_cpu

For each layer shape (batch, channels in/out, side), forward + backward of a training
convolution (the output summed, gradients for input and weight) is timed for oneDNN
(``F.conv2d``) and for every formulation of :mod:`effnet_backbones.layers.small_conv`; the table
marks the one the shipped rule picks, so a machine where the rule picks wrongly shows it. Writes
OUT.md and OUT.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from effnet_backbones.layers import small_conv

__all__ = ['POINTWISE_SHAPES', 'DEPTHWISE_SHAPES', 'time_layer', 'run', 'main']

#: (batch, in channels, out channels): EfficientDet-D0's BiFPN / head width, B0's widest
#: expansions and projections, an SE reduce, the 8-batch variants
POINTWISE_SHAPES = [(2, 64, 64), (8, 64, 64), (2, 192, 1152), (2, 1152, 192), (8, 320, 1152),
                    (8, 1152, 48), (8, 672, 112)]
#: (batch, channels)
DEPTHWISE_SHAPES = [(2, 64), (8, 64), (4, 32), (2, 192), (2, 1152), (8, 480)]
SIDES = (1, 2, 4, 8, 16)


def time_layer(step: Callable[[], None], repeats: int = 100, rounds: int = 5) -> float:
    """Best mean microseconds of ``step`` over ``rounds`` rounds of ``repeats // rounds`` calls."""
    for _ in range(max(1, repeats // 10)):
        step()
    per_round = max(1, repeats // rounds)
    best = float('inf')
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            step()
        best = min(best, (time.perf_counter() - start) / per_round * 1e6)
    return best


def _training_step(forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   x: torch.Tensor, weight: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        forward(x, weight).sum().backward()
    return step


def _pointwise_row(batch: int, cin: int, cout: int, side: int, repeats: int) -> Dict:
    x = torch.randn(batch, cin, side, side, requires_grad=True)
    conv = nn.Conv2d(cin, cout, 1, bias=False)
    weight = conv.weight
    times = {
        'onednn': time_layer(_training_step(lambda a, w: F.conv2d(a, w), x, weight), repeats),
        'thnn': time_layer(_training_step(
            lambda a, w: small_conv._thnn_pointwise(a, w, None), x, weight), repeats),
        'linear': time_layer(_training_step(
            lambda a, w: small_conv._linear_pointwise(a, w, None), x, weight), repeats),
    }
    return dict(kind='pointwise', batch=batch, cin=cin, cout=cout, side=side, us=times,
                picked=small_conv.small_conv_path(conv, x) or 'onednn')


def _depthwise_row(batch: int, channels: int, side: int, repeats: int) -> Dict:
    x = torch.randn(batch, channels, side, side, requires_grad=True)
    conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
    weight = conv.weight
    times = {
        'onednn': time_layer(_training_step(
            lambda a, w: F.conv2d(a, w, None, 1, 1, 1, channels), x, weight), repeats),
        'unfold': time_layer(_training_step(
            lambda a, w: small_conv._unfold_depthwise3x3(a, w, None), x, weight), repeats),
    }
    return dict(kind='depthwise3x3', batch=batch, cin=channels, cout=channels, side=side,
                us=times, picked=small_conv.small_conv_path(conv, x) or 'onednn')


def run(pointwise: Sequence[Tuple[int, int, int]] = POINTWISE_SHAPES,
        depthwise: Sequence[Tuple[int, int]] = DEPTHWISE_SHAPES,
        sides: Sequence[int] = SIDES, repeats: int = 100) -> List[Dict]:
    """Time every layer shape at every side; one row each."""
    rows = [_pointwise_row(batch, cin, cout, side, repeats)
            for batch, cin, cout in pointwise for side in sides]
    rows += [_depthwise_row(batch, channels, side, repeats)
             for batch, channels in depthwise for side in sides]
    return rows


def _markdown(rows: List[Dict], header: str) -> str:
    lines = [header, '', '| layer | batch | channels | side | oneDNN us | thnn us | linear us | '
             'unfold us | picked | picked / oneDNN | fastest |', '|' + '---|' * 11]
    for row in rows:
        us = row['us']
        picked: Optional[str] = row['picked']
        fastest = min(us, key=us.get)
        cells = [f"{us[name]:.0f}" if name in us else '' for name in
                 ('onednn', 'thnn', 'linear', 'unfold')]
        channels = (f"{row['cin']}" if row['kind'] == 'depthwise3x3'
                    else f"{row['cin']} -> {row['cout']}")
        lines.append(f"| {row['kind']} | {row['batch']} | {channels} | {row['side']} | "
                     + ' | '.join(cells)
                     + f" | {picked} | {us[picked] / us['onednn']:.2f} | {fastest} |")
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> List[Dict]:
    """Command line: time the shapes and write OUT.md and OUT.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output stem (OUT.md, OUT.json)')
    parser.add_argument('--repeats', type=int, default=100, help='timed calls per layer')
    parser.add_argument('--sides', type=int, nargs='+', default=list(SIDES))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = run(sides=args.sides, repeats=args.repeats)
    header = (f'training convolutions (forward + backward), float32, {torch.get_num_threads()} '
              f'torch threads, {platform.machine()} CPU, torch {torch.__version__}; best mean of '
              f'5 rounds of {args.repeats // 5} calls; "picked" is the shipped rule\'s choice')
    with open(args.out + '.md', 'w') as handle:
        handle.write(_markdown(rows, header))
    with open(args.out + '.json', 'w') as handle:
        json.dump(dict(header=header, rows=rows), handle, indent=1)
    print(_markdown(rows, header))
    return rows


if __name__ == '__main__':
    main()
