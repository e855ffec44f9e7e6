"""How close a training step's element-wise work comes to the machine's memory bandwidth.

Element-wise operators (normalisation, activations, gates, arithmetic, copies and the squeeze
reductions) do a few operations per byte, so their limit is memory bandwidth, not arithmetic.
:func:`elementwise_profile` profiles one step with :mod:`torch.profiler` (shapes recorded), takes
every outermost element-wise operator, and counts its *minimum* traffic from its argument shapes
and dtypes: each tensor argument read once, the result written once
(:func:`traffic_bytes`). Traffic over time is the operator's effective bandwidth; against
:func:`copy_bandwidth_gb_s` (a large tensor copy on the same device and threads, bytes read plus
written) it is the share of the machine the element-wise part of the step uses. Times are the
operators' kernel time on CUDA and their CPU time (dispatch included) on CPU.

Compiled steps fuse these operators into generated kernels whose traffic the profiler does not
record, so the figures are for eager steps.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable, Dict, List, Sequence

import torch

from .timing import best_seconds

__all__ = ['ELEMENTWISE_OPS', 'REDUCTION_OPS', 'dtype_bytes', 'traffic_bytes',
           'elementwise_profile', 'copy_bandwidth_gb_s']

#: element-wise operators, forward and backward (the normalisations' too: their statistics are a
#: pass over the input at a few operations per byte)
ELEMENTWISE_OPS = frozenset(
    f'aten::{name}' for base in (
        'add', 'sub', 'mul', 'div', 'neg', 'addcmul', 'addcdiv', 'pow', 'exp', 'rsqrt', 'clamp',
        'where', 'silu', 'sigmoid', 'relu', 'hardswish', 'hardsigmoid', 'gelu', 'tanh',
        'leaky_relu', 'elu', 'threshold', 'fill', 'zero', 'copy')
    for name in (base, base + '_')
) | frozenset(f'aten::{name}' for name in (
    'silu_backward', 'sigmoid_backward', 'threshold_backward', 'hardswish_backward',
    'hardsigmoid_backward', 'gelu_backward', 'tanh_backward', 'leaky_relu_backward',
    'elu_backward', 'native_batch_norm', 'native_batch_norm_backward', 'cudnn_batch_norm',
    'cudnn_batch_norm_backward', '_native_batch_norm_legit',
    '_native_batch_norm_legit_no_training', 'native_group_norm', 'native_group_norm_backward',
    'native_layer_norm', 'native_layer_norm_backward', 'batch_norm_stats', 'batch_norm_elemt',
    # the dispatch layer newer torch puts above cuDNN's / the native kernels (outermost counts)
    '_batch_norm_with_update', '_batch_norm_no_update', 'batch_norm_backward',
    'batch_norm_backward_reduce', 'batch_norm_backward_elemt', 'sum', 'mean'))
#: operators that read their inputs and write a result much smaller than them
REDUCTION_OPS = frozenset({'aten::sum', 'aten::mean', 'aten::batch_norm_stats',
                           'aten::batch_norm_backward_reduce'})
_WRITE_ONLY_OPS = frozenset({'aten::fill_', 'aten::zero_'})

# dtype names as the profiler records them (c10's C++ type names)
_DTYPE_BYTES = {'float': 4, 'double': 8, 'c10::BFloat16': 2, 'c10::Half': 2, 'long int': 8,
                'int': 4, 'short int': 2, 'signed char': 1, 'unsigned char': 1, 'bool': 1,
                'c10::Float8_e4m3fn': 1, 'c10::Float8_e5m2': 1}


def dtype_bytes(dtype_name: str) -> int:
    """Bytes per element of a dtype as the profiler names it (``'float'``, ``'c10::BFloat16'``);
    0 for a non-tensor argument (``'Scalar'``, ``''``)."""
    return _DTYPE_BYTES.get(dtype_name, 0)


def traffic_bytes(name: str, shapes: Sequence[Sequence[int]], dtypes: Sequence[str]) -> int:
    """The least memory traffic of one element-wise operator call: every tensor argument read
    once and the result written once (the largest argument's size: broadcasting results are as
    large as their largest input). In-place operators write their first argument; ``copy_``
    reads its source and writes its destination; ``fill_`` / ``zero_`` only write; reductions
    only read. Scalars and empty shapes count nothing. An expanded (stride-0) argument counts
    at its full shape, as the profiler records it (MeanBackward's ``div``): an overcount."""
    sizes = []
    for shape, dtype in zip(shapes, dtypes):
        width = dtype_bytes(dtype)
        if width and shape:  # a 0-d tensor records as [] (a few bytes; not worth counting)
            sizes.append(width * _numel(shape))
    if not sizes:
        return 0
    if name == 'aten::copy_':
        return sum(sizes[:2])
    if name in _WRITE_ONLY_OPS:
        return sizes[0]
    read = sum(sizes)
    if name in REDUCTION_OPS:
        return read
    written = sizes[0] if name.endswith('_') else max(sizes)
    return read + written


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _outermost_elementwise(events: Sequence[Any]) -> List[Any]:
    """The element-wise operator events not nested in another one (``mean`` calls ``sum``,
    ``add_`` on a mixed dtype calls ``copy_``: count the outer one only)."""
    outermost = []
    for event in events:
        if event.name not in ELEMENTWISE_OPS:
            continue
        parent = event.cpu_parent
        while parent is not None and parent.name not in ELEMENTWISE_OPS:
            parent = parent.cpu_parent
        if parent is None:
            outermost.append(event)
    return outermost


def _dtypes_by_event(prof: Any) -> Callable[[Any], Sequence[str]]:
    """A function giving an event's argument dtypes: ``FunctionEvent.input_dtypes`` where torch
    has it (2.14 here), else the profiler's raw events by correlation id (torch 2.11, the
    lent GPU machines' version, records dtypes there only)."""
    raw = {}
    results = getattr(prof.profiler, 'kineto_results', None)
    if results is not None:  # keyed by name too: GPU kernels' ids are another sequence
        raw = {(event.correlation_id(), event.name()): event.dtypes()
               for event in results.events() if event.name() in ELEMENTWISE_OPS}

    def dtypes_of(event: Any) -> Sequence[str]:
        recorded = getattr(event, 'input_dtypes', None)
        return recorded if recorded is not None else raw.get((event.id, event.name), [])
    return dtypes_of


def elementwise_profile(step: Callable[[], None], device: torch.device, steps: int = 2,
                        top: int = 8) -> Dict[str, Any]:
    """Profile ``steps`` calls of ``step`` and sum their element-wise operators' time and least
    traffic, per step (one step alone is at the mercy of a noisy machine).

    Returns ``ms`` (their time per step: kernel time on CUDA, CPU time on CPU), ``step_ms``
    (the wall time of a profiled step: the profiler's own cost and, on CPU, the allocator's
    page faults make it differ from an unprofiled step, so shares of the step refer to this),
    ``bytes`` (:func:`traffic_bytes` summed), ``calls`` and ``ops``: the ``top`` operators by
    time, each ``name, calls, ms, gb_s`` (the breakdown where the time goes).
    """
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=True) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        wall = (time.perf_counter() - start) / steps
    dtypes_of = _dtypes_by_event(prof)
    per_op: Dict[str, List[Any]] = defaultdict(lambda: [0, 0.0, 0])  # calls, microseconds, bytes
    unsized = 0
    for event in _outermost_elementwise(prof.events()):
        nbytes = traffic_bytes(event.name, event.input_shapes, dtypes_of(event))
        if not nbytes:  # 0-d tensors only (BN's num_batches_tracked += 1): no traffic to time
            unsized += any(event.input_shapes)
            continue
        totals = per_op[event.name]
        totals[0] += 1
        totals[1] += event.device_time_total if cuda else event.cpu_time_total
        totals[2] += nbytes
    if unsized and not per_op:
        raise RuntimeError(f'bandwidth: {unsized} element-wise operators had tensor arguments '
                           'but no argument dtypes this profiler records '
                           f'(torch {torch.__version__}); cannot count their traffic')
    micros = sum(totals[1] for totals in per_op.values()) / steps
    ranked = sorted(per_op.items(), key=lambda item: -item[1][1])[:top]
    return dict(ms=micros / 1e3, step_ms=wall * 1e3,
                bytes=sum(totals[2] for totals in per_op.values()) // steps,
                calls=sum(totals[0] for totals in per_op.values()) // steps,
                ops=[dict(name=name, calls=calls // steps, ms=round(us / steps / 1e3, 3),
                          gb_s=round(nbytes / us / 1e3, 2) if us else 0.0)
                     for name, (calls, us, nbytes) in ranked])


def copy_bandwidth_gb_s(device: torch.device, threads: int = 0, nbytes: int = 0,
                        repeats: int = 5) -> float:
    """The best GB/s of copying one large float32 tensor into another (bytes read plus written)
    on ``device`` with ``threads`` torch threads (0: as set): the memory bandwidth the
    element-wise operators could reach. ``nbytes`` defaults to 1 GiB on CUDA and 256 MiB on CPU
    (both far beyond the caches)."""
    if threads:
        torch.set_num_threads(threads)
    cuda = device.type == 'cuda'
    nbytes = nbytes or (2 ** 30 if cuda else 2 ** 28)
    source = torch.ones(nbytes // 4, device=device)
    target = torch.empty_like(source)
    return 2 * source.nbytes / best_seconds(lambda: target.copy_(source), device, repeats) / 1e9
