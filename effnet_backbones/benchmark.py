"""Side-by-side speed and memory benchmark of our backbones, U-Nets and their peers.

A candidate is named ``family:arch[+option...]``:

- ``ours:b4`` our backbone (taps 1..4); options ``+me`` (memory_efficient), ``+cp`` (per-stage
  checkpointing), ``+cpb`` (per-block), ``+scse``, ``+same`` (TF padding)
- ``timm:b4`` / ``timm_tf:b4``: timm ``efficientnet_b4`` / ``tf_efficientnet_b4``, ``features_only``
- ``tv:b4``: torchvision ``efficientnet_b4().features``, taps at features[2], [3], [5], [7]
- ``unet:b4[+me]``: smp U-Net on our encoder; ``unet_smp:b4``: smp's own ``efficientnet-b4``;
  ``unet_timm:resnet50``: smp U-Net on ResNet-50 (any smp encoder name after the colon)

Each measurement runs in a fresh subprocess (so CPU peak RSS belongs to one configuration), and
candidates alternate round by round (A B C A B C ...) so drifts of a noisy machine hit all alike.
A training step is forward, a loss over all outputs (sum of mean squares) and backward.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ['BenchSettings', 'parse_candidate', 'build_candidate', 'add_ratios',
           'saved_activation_bytes', 'measure', 'run_benchmark', 'summarize',
           'format_markdown', 'plot_scatter']

_TV_TAPS = (2, 3, 5, 7)


@dataclass
class BenchSettings:
    """What to measure and how."""

    batch: int = 8
    resolution: int = 256
    mode: str = 'train'  # 'train' or 'infer'
    dtype: str = 'float32'  # 'float32', 'bfloat16', 'float16' (autocast)
    channels_last: bool = False
    compile: bool = False
    device: str = 'cpu'
    warmup: int = 2
    steps: int = 5
    threads: Optional[int] = None


class _TorchvisionTaps(nn.Module):
    """torchvision ``efficientnet_bX().features`` returning the outputs of features[2, 3, 5, 7]."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        import torchvision
        self.features = getattr(torchvision.models, f'efficientnet_{arch}')().features[:8]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        outs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TV_TAPS:
                outs.append(x)
        return outs


FAMILIES = ('ours', 'timm', 'timm_tf', 'tv', 'unet', 'unet_smp', 'unet_timm')
OPTIONS = ('me', 'cp', 'cpb', 'scse', 'same')


def parse_candidate(name: str) -> Tuple[str, str, List[str]]:
    """Split ``family:arch+opt+opt`` and check family and options (see the module docstring)."""
    family, _, rest = name.partition(':')
    arch, *options = rest.split('+')
    if family not in FAMILIES or not arch:
        raise ValueError(f'candidate {name!r}: expected FAMILY:ARCH[+OPTION...] with FAMILY one '
                         f'of {", ".join(FAMILIES)}')
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f'candidate {name!r}: unknown options {unknown}; valid: {", ".join(OPTIONS)}')
    return family, arch, options


def build_candidate(name: str) -> nn.Module:
    """Build the model a candidate name describes (see the module docstring)."""
    family, arch, options = parse_candidate(name)
    ours = dict(memory_efficient='me' in options,
                with_cp='block' if 'cpb' in options else 'cp' in options,
                scse='scse' in options, padding='same' if 'same' in options else 'symmetric')
    if family == 'ours':
        from .backbone import EfficientNet
        return EfficientNet(arch, **ours)
    if family in ('timm', 'timm_tf'):
        import timm
        prefix = 'tf_' if family == 'timm_tf' else ''
        return timm.create_model(f'{prefix}efficientnet_{arch}', features_only=True,
                                 out_indices=(1, 2, 3, 4), pretrained=False)
    if family == 'tv':
        return _TorchvisionTaps(arch)
    if family == 'unet':
        from .adapters.smp import create_smp_model
        return create_smp_model('Unet', arch, classes=2, encoder_options=ours)
    if family in ('unet_smp', 'unet_timm'):
        import segmentation_models_pytorch as smp
        encoder = f'efficientnet-{arch}' if family == 'unet_smp' else arch
        return smp.Unet(encoder, encoder_weights=None, classes=2)
    raise AssertionError(family)  # parse_candidate accepts only FAMILIES


def _outputs(result: Any) -> List[torch.Tensor]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _current_rss_bytes() -> int:
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def measure(name: str, settings: BenchSettings) -> Dict[str, Any]:
    """Measure one candidate in this process: step times, params, GMACs and peak memory."""
    from .profile import count_macs, count_parameters
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    model = build_candidate(name).to(device)
    params = count_parameters(model)
    size = (settings.batch, 3, settings.resolution, settings.resolution)
    gmacs = count_macs(model, (1,) + size[1:]) / 1e9
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    x = torch.randn(size, device=device).to(memory_format=memory_format)
    training = settings.mode == 'train'
    model.train(training)
    run = torch.compile(model) if settings.compile else model
    dtype = getattr(torch, settings.dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step() -> None:
        with autocast, torch.set_grad_enabled(training):
            outs = _outputs(run(x))
            if training:
                loss = sum(out.float().pow(2).mean() for out in outs)
        if training:
            loss.backward()
            model.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize()

    # RSS with model and input in place: the steps' peak minus this is their training memory
    base_rss = _current_rss_bytes()
    saved = saved_activation_bytes(run, x, autocast) if training and not settings.compile else None
    for _ in range(settings.warmup):
        step()
    sync()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(settings.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device.type == 'cuda' else _peak_rss_bytes())
    return dict(name=name, params=params, gmacs=round(gmacs, 3), times=times, peak_bytes=peak,
                base_rss_bytes=base_rss if device.type == 'cpu' else None, saved_bytes=saved)


def saved_activation_bytes(model: nn.Module, x: torch.Tensor, autocast=None) -> int:
    """Bytes of distinct storages autograd keeps for backward in one forward pass (deterministic,
    independent of the allocator: the activation memory a training step must hold)."""
    storages: Dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with autocast if autocast is not None else torch.autocast('cpu', enabled=False):
            outs = _outputs(model(x))
    del outs
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


#: glibc otherwise raises its mmap threshold up to 32 MB after the first large free, keeps later
#: freed activations in the heap, and peak RSS then overstates live memory by chance amounts.
_MALLOC_ENV = {'MALLOC_MMAP_THRESHOLD_': '131072', 'MALLOC_TRIM_THRESHOLD_': '131072'}


def _measure_in_subprocess(name: str, settings: BenchSettings) -> Dict[str, Any]:
    command = [sys.executable, '-m', 'effnet_backbones.benchmark', '--worker', name,
               '--settings', json.dumps(asdict(settings))]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, **_MALLOC_ENV, 'OMP_WAIT_POLICY': 'PASSIVE'})
    if result.returncode != 0:
        raise RuntimeError(f'benchmark of {name!r} failed:\n{result.stderr[-4000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_benchmark(names: Sequence[str], settings: BenchSettings, rounds: int = 3,
                  log=print) -> List[Dict[str, Any]]:
    """Measure every candidate ``rounds`` times, alternating candidates within each round."""
    for name in names:  # fail on a bad name before spending minutes
        parse_candidate(name)
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names:
            result = _measure_in_subprocess(name, settings)
            runs[name].append(result)
            log(f'round {round_index + 1}/{rounds} {name}: '
                f'{statistics.median(result["times"]) * 1e3:.1f} ms/step, '
                f'peak {result["peak_bytes"] / 2**20:.0f} MiB')
    return [summarize(name, runs[name], settings) for name in names]


def summarize(name: str, results: List[Dict[str, Any]], settings: BenchSettings) -> Dict[str, Any]:
    """Median step time over all rounds, the spread of round medians, and the peak memory."""
    times = [t for result in results for t in result['times']]
    round_medians = [statistics.median(result['times']) for result in results]
    median = statistics.median(times)
    peaks = [result['peak_bytes'] for result in results]
    row = dict(name=name, params=results[0]['params'], gmacs=results[0]['gmacs'],
               step_ms=round(median * 1e3, 1),
               spread_ms=round((max(round_medians) - min(round_medians)) * 1e3, 1),
               images_per_s=round(settings.batch / median, 2),
               peak_mib=round(statistics.median(peaks) / 2**20, 1))
    if results[0].get('saved_bytes'):
        row['saved_mib'] = round(results[0]['saved_bytes'] / 2**20, 1)
    bases = [result['base_rss_bytes'] for result in results if result.get('base_rss_bytes')]
    if bases:  # CPU: the part of the peak that the steps added on top of model and input
        row['step_mib'] = round(statistics.median(p - b for p, b in zip(peaks, bases)) / 2**20, 1)
    return row


def add_ratios(rows: List[Dict[str, Any]], baseline: str) -> List[Dict[str, Any]]:
    """Add time and memory ratios against the row named ``baseline``."""
    base = next((row for row in rows if row['name'] == baseline), None)
    if base is None:
        raise ValueError(f'baseline {baseline!r} is not among the candidates {[r["name"] for r in rows]}')
    for row in rows:
        row['time_x'] = round(row['step_ms'] / base['step_ms'], 3)
        row['peak_x'] = round(row['peak_mib'] / base['peak_mib'], 3)
        if 'step_mib' in row and base.get('step_mib'):
            row['step_mem_x'] = round(row['step_mib'] / base['step_mib'], 3)
        if 'saved_mib' in row and base.get('saved_mib'):
            row['saved_x'] = round(row['saved_mib'] / base['saved_mib'], 3)
    return rows


def format_markdown(rows: List[Dict[str, Any]]) -> str:
    """The result rows as a markdown table."""
    from .profile import markdown_table
    return markdown_table(rows)


def plot_scatter(rows: List[Dict[str, Any]], path: str, title: str = '') -> None:
    """PNG scatter of throughput (images/s) against peak memory, one labelled point per model."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    memory_key = 'step_mib' if all('step_mib' in row for row in rows) else 'peak_mib'
    import textwrap
    fig, ax = plt.subplots(figsize=(7, 5))
    for index, row in enumerate(rows):
        ax.scatter(row[memory_key], row['images_per_s'])
        # staggered labels stay readable when models share a point (same ops, same memory)
        ax.annotate(row['name'], (row[memory_key], row['images_per_s']), fontsize=8,
                    xytext=(5, 4 - 11 * (index % 3)), textcoords='offset points')
    ax.set_xlabel('training memory added by the steps (MiB, peak RSS - RSS before)'
                  if memory_key == 'step_mib' else 'peak memory (MiB)')
    ax.set_ylabel('images / s')
    ax.set_title(textwrap.fill(title, 80), fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _worker_main(argv: Sequence[str]) -> None:
    name = argv[argv.index('--worker') + 1]
    settings = BenchSettings(**json.loads(argv[argv.index('--settings') + 1]))
    print(json.dumps(measure(name, settings)))


if __name__ == '__main__':
    _worker_main(sys.argv)
