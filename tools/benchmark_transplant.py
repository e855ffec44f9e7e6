"""Measure what transplanting buys: validation Dice against iterations for a U-Net grown from a
trained smaller one, versus the same model from random init (and from ImageNet init if reachable).

    python tools/benchmark_transplant.py                       # demo nuclei data, B0 -> B2
    python tools/benchmark_transplant.py --arch b4 --iters 600 --data-root DIR --imagenet

Every run uses the recipe config (configs/grow/), the same seed, data, schedule and budget; each
starts from a checkpoint (grown, random or ImageNet) that is evaluated first, so the curves begin
at iteration 0. Writes ``OUT.json`` (every point), ``OUT.png`` (the plot) and prints a Markdown
table for docs/transplant.md.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from effnet_backbones.registry import MODELS  # noqa: E402
from effnet_backbones.spec import SCALING, check_arch  # noqa: E402
from tasks.engine import prepare_test_config, prepare_train_config, test, train  # noqa: E402
from tasks.engine.transplant import grow_checkpoint, model_config_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / 'configs/grow/unet_grow_b0.py'
METRIC = 'mDice'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', help='dataset folder (default: the demo nuclei data)')
    parser.add_argument('--src-arch', default='b0', help='the small variant trained first')
    parser.add_argument('--arch', default='b2', help='the larger variant compared')
    parser.add_argument('--src-iters', type=int, default=600, help='training of the small model')
    parser.add_argument('--iters', type=int, default=300, help='budget of each larger run')
    parser.add_argument('--val-interval', type=int, default=25)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--crop', type=int, help='crop size of every run (default: each '
                                                 "variant's own resolution)")
    parser.add_argument('--lr', type=float, help='peak learning rate of the larger runs '
                                                 '(default: the recipe\'s first stage, 1e-3)')
    parser.add_argument('--imagenet', action='store_true',
                        help='also run from ImageNet weights (torchvision, needs them downloaded)')
    parser.add_argument('--work-dir', default='work_dirs/transplant_benchmark')
    parser.add_argument('--out', default='docs/transplant_benchmark', help='stem of .json / .png')
    return parser.parse_args(argv)


def run_options(args: argparse.Namespace, arch: str, iters: int) -> Dict[str, object]:
    """--cfg-options of one run: variant, crop, small batch, no worker processes, dense validation."""
    crop = args.crop or SCALING[check_arch(arch)].resolution
    return {'model.arch': arch, 'train_dataloader.dataset.crop_size': crop,
            'train_dataloader.batch_size': args.batch_size, 'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False, 'val_dataloader.num_workers': 0,
            'val_dataloader.persistent_workers': False, 'test_dataloader.num_workers': 0,
            'test_dataloader.persistent_workers': False, 'init_from': None,
            'default_hooks.checkpoint.interval': iters, 'default_hooks.logger.interval': 25}


def train_run(args: argparse.Namespace, name: str, arch: str, iters: int,
              load_from: Optional[str] = None, lr: Optional[float] = None) -> Path:
    """Train one run (or reuse a finished one of the same name); returns its work dir."""
    work = Path(args.work_dir) / name
    if (work / 'training_curves.json').is_file():
        return work
    options = run_options(args, arch, iters)
    options.update({'load_from': load_from, 'experiment_name': f'transplant_benchmark_{name}',
                    'train_cfg.val_interval': args.val_interval})
    if lr is not None:
        options['optim_wrapper.optimizer.lr'] = lr
    cfg = prepare_train_config(str(RECIPE), work_dir=str(work), data_root=args.data_root,
                               max_iters=iters, cfg_options=options)
    torch.manual_seed(0)
    train(cfg)
    return work


def evaluate(args: argparse.Namespace, name: str, arch: str, checkpoint: str) -> float:
    """Validation Dice of a checkpoint (the iteration-0 point of a curve)."""
    options = run_options(args, arch, 1)
    options['experiment_name'] = f'transplant_benchmark_eval_{name}'
    cfg = prepare_test_config(str(RECIPE), checkpoint, work_dir=str(Path(args.work_dir) / f'eval_{name}'),
                              data_root=args.data_root, cfg_options=options)
    return float(test(cfg)[METRIC])


def initial_checkpoint(args: argparse.Namespace, name: str, pretrained: bool) -> str:
    """A checkpoint of the larger model at random init, or with the encoder's ImageNet weights."""
    cfg = Config.fromfile(str(RECIPE))
    model_cfg = model_config_for(cfg.model, args.arch)
    if pretrained:
        model_cfg['encoder_options'] = dict(model_cfg.get('encoder_options') or {}, pretrained=True)
    torch.manual_seed(0)
    path = Path(args.work_dir) / f'{name}_init.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': MODELS.build(model_cfg).state_dict()}, path)
    return str(path)


def curve(work: Path, start: float) -> List[List[float]]:
    """[[iteration, Dice], ...] from the run's training_curves.json, starting at iteration 0."""
    points = json.loads((work / 'training_curves.json').read_text())['metric']
    return [[0, start]] + [[int(i), float(v)] for i, v in points]


def final_loss(work: Path, last: int = 20) -> float:
    """Mean training loss over the run's last ``last`` iterations."""
    points = json.loads((work / 'training_curves.json').read_text())['loss'][-last:]
    return sum(value for _, value in points) / len(points)


def plot(curves: Dict[str, List[List[float]]], title: str, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axis = plt.subplots(figsize=(7, 4.2))
    for label, points in curves.items():
        iters, values = zip(*points)
        axis.plot(iters, values, marker='o', markersize=3, linewidth=1.4, label=label)
    axis.set_xlabel('iteration')
    axis.set_ylabel(f'validation {METRIC}')
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(curves: Dict[str, List[List[float]]], losses: Dict[str, float]) -> str:
    """Markdown: Dice at iteration 0, about a quarter, half and all of the budget, the best, and
    the training loss at the end."""
    iterations = [point[0] for point in next(iter(curves.values()))]
    budget = iterations[-1]
    marks = sorted({min(iterations, key=lambda i: abs(i - goal))
                    for goal in (0, budget / 4, budget / 2, budget)})

    def at(points: List[List[float]], mark: int) -> float:
        return next(value for iteration, value in points if iteration == mark)

    rows = ['| init | ' + ' | '.join(f'{METRIC} it {m}' for m in marks)
            + f' | best {METRIC} | train loss, last 20 it |', '|' + '---|' * (len(marks) + 3)]
    for label, points in curves.items():
        rows.append(f'| {label} | ' + ' | '.join(f'{at(points, m):.3f}' for m in marks)
                    + f' | {max(p[1] for p in points):.3f} | {losses[label]:.3f} |')
    return '\n'.join(rows)


def starting_points(args: argparse.Namespace, source: Path) -> Dict[str, str]:
    """label -> initial checkpoint of each larger run: grown from ``source``, random, ImageNet."""
    src_arch, arch = check_arch(args.src_arch), check_arch(args.arch)
    grown = str(Path(args.work_dir) / f'{arch}_grown_init.pth')
    grow_checkpoint(str(source), arch, grown, config=str(RECIPE),
                    cfg_options=run_options(args, arch, 1))
    starts = {f'{arch} grown from trained {src_arch}': grown,
              f'{arch} random init': initial_checkpoint(args, 'random', pretrained=False)}
    if args.imagenet:
        starts[f'{arch} ImageNet encoder'] = initial_checkpoint(args, 'imagenet', pretrained=True)
    return starts


def write_outputs(args: argparse.Namespace, source: Path, curves: Dict[str, List[List[float]]],
                  losses: Dict[str, float]) -> None:
    """``OUT.json`` and ``OUT.png``; print the Markdown table."""
    source_dice = max(point[1] for point in curve(source, 0.0)[1:])  # its best: what was grown
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.json').write_text(json.dumps(dict(
        curves=curves, final_train_loss=losses,
        source=dict(arch=args.src_arch, iters=args.src_iters, best_dice=source_dice,
                    final_train_loss=final_loss(source)),
        settings={k: v for k, v in vars(args).items() if k not in ('work_dir', 'out')}),
        indent=1))
    lr = f', peak lr {args.lr:g}' if args.lr else ''
    plot(curves, f'U-Net {args.arch}: {args.iters} iterations each{lr} ({args.src_arch} trained '
                 f'{args.src_iters} first)', str(out.with_suffix('.png')))
    print(f'source {args.src_arch}, best of {args.src_iters} iterations: {METRIC} '
          f'{source_dice:.3f}, train loss over its last 20 iterations {final_loss(source):.3f}')
    print(table(curves, losses))


def main(argv=None) -> Dict[str, List[List[float]]]:
    """Train the small model, then each larger run from its starting point; write the results."""
    args = parse_args(argv)
    source = train_run(args, f'{check_arch(args.src_arch)}_source', args.src_arch, args.src_iters)
    curves, losses = {}, {}
    for index, (label, checkpoint) in enumerate(starting_points(args, source).items()):
        name = f'{check_arch(args.arch)}_run{index}' + (f'_lr{args.lr:g}' if args.lr else '')
        start = evaluate(args, name, args.arch, checkpoint)
        work = train_run(args, name, args.arch, args.iters, load_from=checkpoint, lr=args.lr)
        curves[label] = curve(work, start)
        losses[label] = final_loss(work)
    write_outputs(args, source, curves, losses)
    return curves


if __name__ == '__main__':
    main()
