"""Side-by-side speed and memory of our backbones, U-Nets and their peers (see
:mod:`benchmarks.candidates` for the names).

Each measurement runs in a fresh subprocess (so CPU peak RSS belongs to one configuration), and
candidates alternate round by round (A B C A B C ...) so drifts of a noisy machine hit all alike.
A training step is forward, a loss over all outputs (sum of mean squares) and backward (and, with
a candidate's ``+adamw`` / ``+adamwfast``, gradient clipping and an AdamW step).

Memory comes in two kinds. :func:`saved_activation_bytes` counts what autograd keeps for backward:
deterministic, independent of the allocator, the figure to compare and test. Peak RSS (CPU) or
peak allocated bytes (CUDA) is what a user's machine shows; on CPU it depends on glibc's malloc,
so each worker starts without the caller's malloc variables and runs as a plain script does
(glibc's dynamic thresholds), or, for a candidate name ending in ``@lean`` (``timm:b0@lean``),
with the fixed thresholds of :func:`effnet_backbones.allocator.tune_cpu_allocator` (RSS follows
live memory, at a time cost), or with ``@caching`` under the caching allocator of
:mod:`effnet_backbones.caching_allocator`. It is reported, never asserted.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from effnet_backbones.allocator import (CPU_ALLOCATORS, GLIBC_MALLOC_VARIABLES,
                                        apply_cpu_allocator, current_rss_bytes, peak_rss_bytes)
from effnet_backbones.compiling import compile_model

from .bandwidth import copy_bandwidth_gb_s, elementwise_profile
from .candidates import build_candidate, memory_budget_of, optimizer_of, parse_candidate
from .report import summarize
from .timing import best_seconds

__all__ = ['BenchSettings', 'ALLOCATORS', 'split_allocator', 'saved_activation_bytes', 'measure',
           'matmul_gflops', 'measure_peak_gflops', 'measure_peak_bandwidth',
           'check_bandwidth_settings', 'run_benchmark']

REPO_ROOT = Path(__file__).resolve().parents[1]


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
    bandwidth: bool = False  # also profile two steps' element-wise operators (benchmarks.bandwidth)


def _outputs(result: Any) -> List[torch.Tensor]:
    """Every tensor of a model's output (nested lists and tuples, dicts: detectors' per-level
    class and box maps)."""
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, (list, tuple)):
        return [tensor for item in result for tensor in _outputs(item)]
    return [result]


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


def measure(name: str, settings: BenchSettings) -> Dict[str, Any]:
    """Measure one candidate in this process: step times, params, GMACs and memory.

    Returns ``name, params, gmacs, times`` (seconds per step), ``saved_bytes`` (training; under
    compile measured after the warm-up compiled the graph; else None), ``peak_bytes`` and, on CPU, ``base_rss_bytes`` (RSS with the model and
    input in place: the steps' peak minus this is their training memory).
    """
    from effnet_backbones.profile import count_macs, count_parameters
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    model = build_candidate(name, settings.resolution).to(device)
    params = count_parameters(model)
    size = (settings.batch, 3, settings.resolution, settings.resolution)
    gmacs = count_macs(model, (1,) + size[1:]) / 1e9
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    x = torch.randn(size, device=device).to(memory_format=memory_format)
    training = settings.mode == 'train'
    model.train(training)
    budget = memory_budget_of(name)
    if budget is not None and not settings.compile:
        raise ValueError(f'candidate {name!r}: +mbNN (a compiled memory budget) needs --compile')
    check_bandwidth_settings(settings)
    run = compile_model(model, memory_budget=budget) if settings.compile else model
    dtype = getattr(torch, settings.dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    optim_wrapper = _optim_wrapper(model, optimizer_of(name)) if training else None

    def step() -> None:
        with autocast, torch.set_grad_enabled(training):
            outs = _outputs(run(x))
            if training:
                loss = sum(out.float().pow(2).mean() for out in outs)
        if optim_wrapper is not None:  # backward, clipping, the step, zero_grad
            optim_wrapper.update_params(loss)
        elif training:
            loss.backward()
            model.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize()

    base_rss = current_rss_bytes()
    saved = saved_activation_bytes(run, x, autocast) if training and not settings.compile else None
    for _ in range(settings.warmup):
        step()
    sync()
    if training and settings.compile:  # what the compiled graph saves, once it is compiled
        saved = saved_activation_bytes(run, x, autocast)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(settings.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device.type == 'cuda' else peak_rss_bytes())
    result = dict(name=name, params=params, gmacs=round(gmacs, 3), times=times, peak_bytes=peak,
                  base_rss_bytes=base_rss if device.type == 'cpu' else None, saved_bytes=saved)
    if settings.bandwidth:  # after the peak was read: the profiler's records are not the step's
        try:
            result['elementwise'] = elementwise_profile(step, device)
        except Exception as err:  # noqa: BLE001  (the timings above stand without it)
            result['elementwise_error'] = f'{type(err).__name__}: {err}'[:300]
    return result


def check_bandwidth_settings(settings: BenchSettings) -> None:
    """The element-wise bandwidth share needs eager steps: raise ValueError otherwise."""
    if settings.bandwidth and settings.compile:
        raise ValueError('bandwidth: the element-wise bandwidth share is measured on eager steps '
                         '(a compiled step fuses the operators into kernels whose traffic the '
                         'profiler does not record); drop --compile or --bandwidth')


def _optim_wrapper(model: nn.Module, constructor: Optional[str]):
    """AdamW (lr 1e-3, weight decay 1e-4, gradient norm clipped at 5: adamw_cosine_4k.py's)
    built by ``constructor``; None for no optimiser step."""
    if constructor is None:
        return None
    import tasks.engine  # noqa: F401  (registers effnet_backbones.FastOptimWrapperConstructor)
    from mmengine.optim import build_optim_wrapper
    return build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor=constructor, clip_grad=dict(max_norm=5.0),
        optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4)))


#: worker names that measure the machine's matmul peak and copy bandwidth, not a candidate
_PEAK_WORKER = '__matmul_peak__'
_BANDWIDTH_WORKER = '__copy_bandwidth__'


def matmul_gflops(settings: BenchSettings, repeats: int = 5) -> float:
    """The best GFLOP/s of a large square matmul in this process: on the candidates' device,
    dtype and threads, the most a training step's convolutions could reach."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    side = 8192 if device.type == 'cuda' else 2048
    dtype = getattr(torch, settings.dtype)
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    return 2 * side ** 3 / best_seconds(lambda: torch.mm(a, b), device, repeats) / 1e9


def measure_peak_gflops(settings: BenchSettings) -> float:
    """:func:`matmul_gflops` in a fresh worker process, as the candidates are measured."""
    return _measure_in_subprocess(_PEAK_WORKER, settings)['gflops']


def measure_peak_bandwidth(settings: BenchSettings) -> float:
    """:func:`benchmarks.bandwidth.copy_bandwidth_gb_s` in a fresh worker process, on the
    candidates' device and threads."""
    return _measure_in_subprocess(_BANDWIDTH_WORKER, settings)['gb_s']


def _measure_in_subprocess(name: str, settings: BenchSettings) -> Dict[str, Any]:
    command = [sys.executable, '-m', 'benchmarks.speed', '--worker', name,
               '--settings', json.dumps(asdict(settings))]
    # the checkout on the path: `benchmarks` is not installed, and the caller's cwd may be anywhere
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get('PYTHONPATH')]))
    result = subprocess.run(command, capture_output=True, text=True,
                            # OpenMP waiting as the caller's (tools/_bootstrap.py sets the tools')
                            env={**_without_malloc_settings(os.environ),
                                 'PYTHONPATH': python_path})
    if result.returncode != 0:
        raise RuntimeError(f'benchmark of {name!r} failed:\n{result.stderr[-4000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


ALLOCATORS = CPU_ALLOCATORS


def split_allocator(name: str) -> Tuple[str, str]:
    """``'timm:b0@lean'`` -> ``('timm:b0', 'lean')``; no suffix means ``'default'``."""
    candidate, _, allocator = name.partition('@')
    allocator = allocator or 'default'
    if allocator not in ALLOCATORS:
        raise ValueError(f'{name!r}: the allocator after "@" must be one of {ALLOCATORS}')
    return candidate, allocator


def _without_malloc_settings(environ: Dict[str, str]) -> Dict[str, str]:
    """The caller's environment less glibc malloc variables: each worker chooses its allocator
    settings itself (:func:`split_allocator`), whatever the shell had."""
    return {key: value for key, value in environ.items() if key not in GLIBC_MALLOC_VARIABLES}


def run_benchmark(names: Sequence[str], settings: BenchSettings, rounds: int = 3,
                  log: Callable[[str], None] = print,
                  runs_out: Optional[Dict[str, List[Dict[str, Any]]]] = None
                  ) -> List[Dict[str, Any]]:
    """Measure every candidate ``rounds`` times, alternating candidates within each round; one
    summary row per candidate (:func:`benchmarks.report.summarize`). ``runs_out``, if given,
    receives each candidate's raw measurements (:func:`measure`'s dicts).

    A candidate whose worker fails is logged with its error, measured no more, and reported as
    a row ``{'name', 'failed'}``: the others' table still comes out (a one-off GPU run cannot
    be repeated for one broken candidate). RuntimeError if every candidate failed.
    """
    for name in names:  # fail on a bad name before spending minutes
        parse_candidate(split_allocator(name)[0])
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in names}
    failures: Dict[str, str] = {}
    for round_index in range(rounds):
        for name in names:
            if name in failures:
                continue
            try:
                result = _measure_in_subprocess(name, settings)
            except RuntimeError as err:
                failures[name] = str(err).strip().splitlines()[-1]
                log(f'round {round_index + 1}/{rounds} {name}: FAILED\n{err}')
                continue
            runs[name].append(result)
            log(f'round {round_index + 1}/{rounds} {name}: '
                f'{statistics.median(result["times"]) * 1e3:.1f} ms/step, '
                f'peak {result["peak_bytes"] / 2**20:.0f} MiB'
                + (f'; no element-wise profile: {result["elementwise_error"]}'
                   if 'elementwise_error' in result else ''))
    if len(failures) == len(names):
        raise RuntimeError(f'every candidate failed: {failures}')
    if runs_out is not None:
        runs_out.update({name: runs[name] for name in names if name not in failures})
    return [dict(name=name, failed=failures[name]) if name in failures
            else summarize(name, runs[name], settings) for name in names]


def _worker_main(argv: Sequence[str]) -> None:
    name = argv[argv.index('--worker') + 1]
    settings = BenchSettings(**json.loads(argv[argv.index('--settings') + 1]))
    name, allocator = split_allocator(name)
    if allocator != 'default':  # before the model and input exist, as tools/train.py does
        print(apply_cpu_allocator(allocator), file=sys.stderr)
    if name == _PEAK_WORKER:
        print(json.dumps(dict(gflops=matmul_gflops(settings))))
        return
    if name == _BANDWIDTH_WORKER:
        print(json.dumps(dict(gb_s=copy_bandwidth_gb_s(torch.device(settings.device),
                                                       settings.threads or 0))))
        return
    print(json.dumps(measure(name, settings)))


if __name__ == '__main__':
    _worker_main(sys.argv)
