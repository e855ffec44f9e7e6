"""What transplanting buys: validation Dice against iterations for a U-Net grown from a trained
smaller one, versus the same model from random init (and from ImageNet init if reachable).

Every run uses the recipe config (configs/grow/), the same seed, data, schedule and budget; each
starts from a checkpoint (grown, random or ImageNet) that is evaluated first, so the curves begin
at iteration 0. :func:`run_transplant_benchmark` writes ``OUT.json`` (every point), ``OUT.png``
(the plot) and prints a Markdown table for docs/transplant.md; ``tools/benchmark_transplant.py``
is its command line.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch

from effnet_backbones.registry import MODELS
from effnet_backbones.spec import SCALING, check_arch
from tasks.engine import prepare_test_config, prepare_train_config, test, train
from tasks.engine.transplant import grow_checkpoint, model_config_for

__all__ = ['TransplantBenchSettings', 'run_transplant_benchmark', 'table']

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / 'configs/grow/unet_grow_b0.py'
METRIC = 'mDice'
Curve = List[List[float]]  # [[iteration, value], ...]


@dataclass
class TransplantBenchSettings:
    """One comparison: the small model trained first, then each larger run on the same budget.

    Args:
        data_root: dataset folder (None: the demo nuclei data).
        src_arch: the small variant trained first.
        arch: the larger variant compared.
        src_iters: training of the small model.
        iters: budget of each larger run.
        val_interval: iterations between validation points of a curve.
        batch_size: training batch of every run.
        crop: crop size of every run (None: each variant's own resolution).
        lr: peak learning rate of the larger runs (None: the recipe's, 1e-3).
        imagenet: also run from ImageNet weights (torchvision's, downloaded beforehand).
        work_dir: where the runs' work dirs go (finished runs of the same name are reused).
        out: stem of the ``.json`` and ``.png`` written.
    """

    data_root: Optional[str] = None
    src_arch: str = 'b0'
    arch: str = 'b2'
    src_iters: int = 600
    iters: int = 300
    val_interval: int = 25
    batch_size: int = 4
    crop: Optional[int] = None
    lr: Optional[float] = None
    imagenet: bool = False
    work_dir: str = 'work_dirs/transplant_benchmark'
    out: str = 'docs/transplant_benchmark'


def run_options(settings: TransplantBenchSettings, arch: str, iters: int) -> Dict[str, object]:
    """--cfg-options of one run: variant, crop, small batch, no worker processes, dense validation."""
    crop = settings.crop or SCALING[check_arch(arch)].resolution
    return {'model.arch': arch, 'train_dataloader.dataset.crop_size': crop,
            'train_dataloader.batch_size': settings.batch_size, 'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False, 'val_dataloader.num_workers': 0,
            'val_dataloader.persistent_workers': False, 'test_dataloader.num_workers': 0,
            'test_dataloader.persistent_workers': False, 'init_from': None,
            'default_hooks.checkpoint.interval': iters, 'default_hooks.logger.interval': 25}


def train_run(settings: TransplantBenchSettings, name: str, arch: str, iters: int,
              load_from: Optional[str] = None, lr: Optional[float] = None) -> Path:
    """Train one run (or reuse a finished one of the same name); returns its work dir."""
    work = Path(settings.work_dir) / name
    if (work / 'training_curves.json').is_file():
        return work
    options = run_options(settings, arch, iters)
    options.update({'load_from': load_from, 'experiment_name': f'transplant_benchmark_{name}',
                    'train_cfg.val_interval': settings.val_interval})
    if lr is not None:
        options['optim_wrapper.optimizer.lr'] = lr
    cfg = prepare_train_config(str(RECIPE), work_dir=str(work), data_root=settings.data_root,
                               max_iters=iters, cfg_options=options)
    torch.manual_seed(0)
    train(cfg)
    return work


def evaluate(settings: TransplantBenchSettings, name: str, arch: str, checkpoint: str) -> float:
    """Validation Dice of a checkpoint (the iteration-0 point of a curve)."""
    options = run_options(settings, arch, 1)
    options['experiment_name'] = f'transplant_benchmark_eval_{name}'
    work_dir = str(Path(settings.work_dir) / f'eval_{name}')
    cfg = prepare_test_config(str(RECIPE), checkpoint, work_dir=work_dir,
                              data_root=settings.data_root, cfg_options=options)
    return float(test(cfg)[METRIC])


def initial_checkpoint(settings: TransplantBenchSettings, name: str, pretrained: bool) -> str:
    """A checkpoint of the larger model at random init, or with the encoder's ImageNet weights."""
    # the recipe's model as training builds it: classes and channels from the data
    cfg = prepare_train_config(str(RECIPE), work_dir=settings.work_dir, data_root=settings.data_root)
    model_cfg = model_config_for(cfg.model, settings.arch)
    if pretrained:
        model_cfg['encoder_options'] = dict(model_cfg.get('encoder_options') or {}, pretrained=True)
    torch.manual_seed(0)
    path = Path(settings.work_dir) / f'{name}_init.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': MODELS.build(model_cfg).state_dict()}, path)
    return str(path)


def _history(work: Path, key: str) -> Curve:
    """The ``'loss'`` or ``'metric'`` points a run's TrainingCurvesHook saved."""
    return json.loads((work / 'training_curves.json').read_text())[key]


def curve(work: Path, start: float) -> Curve:
    """[[iteration, Dice], ...] from the run's training_curves.json, starting at iteration 0."""
    return [[0, start]] + [[int(i), float(v)] for i, v in _history(work, 'metric')]


def final_loss(work: Path, last: int = 20) -> float:
    """Mean training loss over the run's last ``last`` iterations."""
    points = _history(work, 'loss')[-last:]
    return sum(value for _, value in points) / len(points)


def plot(curves: Dict[str, Curve], title: str, path: str) -> None:
    """PNG of every run's validation curve."""
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


def table(curves: Dict[str, Curve], losses: Dict[str, float]) -> str:
    """Markdown: Dice at iteration 0, about a quarter, half and all of the budget, the best, and
    the training loss at the end."""
    iterations = [point[0] for point in next(iter(curves.values()))]
    budget = iterations[-1]
    marks = sorted({min(iterations, key=lambda i: abs(i - goal))
                    for goal in (0, budget / 4, budget / 2, budget)})

    def at(points: Curve, mark: int) -> float:
        return next(value for iteration, value in points if iteration == mark)

    rows = ['| init | ' + ' | '.join(f'{METRIC} it {m}' for m in marks)
            + f' | best {METRIC} | train loss, last 20 it |', '|' + '---|' * (len(marks) + 3)]
    for label, points in curves.items():
        rows.append(f'| {label} | ' + ' | '.join(f'{at(points, m):.3f}' for m in marks)
                    + f' | {max(p[1] for p in points):.3f} | {losses[label]:.3f} |')
    return '\n'.join(rows)


def starting_points(settings: TransplantBenchSettings, source: Path) -> Dict[str, str]:
    """label -> initial checkpoint of each larger run: grown from ``source``, random, ImageNet."""
    src_arch, arch = check_arch(settings.src_arch), check_arch(settings.arch)
    grown = str(Path(settings.work_dir) / f'{arch}_grown_init.pth')
    grow_checkpoint(str(source), arch, grown, config=str(RECIPE),
                    cfg_options=run_options(settings, arch, 1))
    starts = {f'{arch} grown from trained {src_arch}': grown,
              f'{arch} random init': initial_checkpoint(settings, 'random', pretrained=False)}
    if settings.imagenet:
        starts[f'{arch} ImageNet encoder'] = initial_checkpoint(settings, 'imagenet',
                                                                pretrained=True)
    return starts


def write_outputs(settings: TransplantBenchSettings, source: Path, curves: Dict[str, Curve],
                  losses: Dict[str, float]) -> None:
    """``OUT.json`` and ``OUT.png``; print the Markdown table."""
    source_dice = max(point[1] for point in curve(source, 0.0)[1:])  # its best: what was grown
    out = Path(settings.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.json').write_text(json.dumps(dict(
        curves=curves, final_train_loss=losses,
        source=dict(arch=settings.src_arch, iters=settings.src_iters, best_dice=source_dice,
                    final_train_loss=final_loss(source)),
        settings={k: v for k, v in asdict(settings).items() if k not in ('work_dir', 'out')}),
        indent=1))
    lr = f', peak lr {settings.lr:g}' if settings.lr else ''
    title = (f'U-Net {settings.arch}: {settings.iters} iterations each{lr} '
             f'({settings.src_arch} trained {settings.src_iters} first)')
    plot(curves, title, str(out.with_suffix('.png')))
    print(f'source {settings.src_arch}, best of {settings.src_iters} iterations: {METRIC} '
          f'{source_dice:.3f}, train loss over its last 20 iterations {final_loss(source):.3f}')
    print(table(curves, losses))


def run_transplant_benchmark(settings: TransplantBenchSettings) -> Dict[str, Curve]:
    """Train the small model, then each larger run from its starting point; write the results.

    Returns label -> ``[[iteration, Dice], ...]`` of each larger run.
    """
    source = train_run(settings, f'{check_arch(settings.src_arch)}_source', settings.src_arch,
                       settings.src_iters)
    curves, losses = {}, {}
    lr_tag = f'_lr{settings.lr:g}' if settings.lr else ''
    for index, (label, checkpoint) in enumerate(starting_points(settings, source).items()):
        name = f'{check_arch(settings.arch)}_run{index}{lr_tag}'
        start = evaluate(settings, name, settings.arch, checkpoint)
        work = train_run(settings, name, settings.arch, settings.iters, load_from=checkpoint,
                         lr=settings.lr)
        curves[label] = curve(work, start)
        losses[label] = final_loss(work)
    write_outputs(settings, source, curves, losses)
    return curves

