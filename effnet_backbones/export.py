"""Deployment export (ONNX, TorchScript, torch.export ExportedProgram) with output verification."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .fileio import atomic_path

__all__ = ['FORMATS', 'export_model', 'run_exported', 'max_abs_difference', 'TupleOutputs']

FORMATS = ('onnx', 'torchscript', 'exported-program')
# 32 px gives 1x1 stride-32 maps, which torch.export treats as a broadcasting special case
MIN_SIDE = 33


class TupleOutputs(nn.Module):
    """Wrap a model so that list outputs become tuples (ONNX and torch.export want tuples)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out) if isinstance(out, (list, tuple)) else (out,)


def _output_names(model: nn.Module, example: torch.Tensor) -> List[str]:
    with torch.no_grad():
        count = len(model(example))
    return ['output'] if count == 1 else [f'tap{i}' for i in range(count)]


def _dynamic_shapes(dynamic: bool, size_multiple: int) -> Optional[Dict[str, Dict[int, Any]]]:
    if not dynamic:
        return None
    Dim = torch.export.Dim
    if size_multiple > 1:  # models that only take multiples of their stride (smp decoders)
        height = size_multiple * Dim('h_blocks', min=max(1, MIN_SIDE // size_multiple), max=512)
        width = size_multiple * Dim('w_blocks', min=max(1, MIN_SIDE // size_multiple), max=512)
    else:
        height, width = Dim('height', min=MIN_SIDE, max=8192), Dim('width', min=MIN_SIDE, max=8192)
    return {'x': {0: Dim('batch', min=1, max=1024), 2: height, 3: width}}


def export_model(model: nn.Module, path: Union[str, Path], fmt: str, example: torch.Tensor,
                 dynamic: bool = True, opset: int = 18, size_multiple: int = 1) -> Path:
    """Export ``model`` (eval mode) to ``path`` in ``fmt``, with dynamic batch and image size.

    Args:
        fmt: 'onnx' (dynamo exporter, opset >= 17), 'torchscript' (traced) or 'exported-program'.
        example: an input used for tracing; its sizes are only an example when ``dynamic``.
        size_multiple: input sides must be multiples of this (e.g. 32 for U-Nets without padding).

    The file is written atomically (temporary name, then rename), so an interrupted export never
    leaves a half-written model at ``path``.
    """
    if fmt not in FORMATS:
        raise ValueError(f'export format must be one of {FORMATS}, got {fmt!r}')
    if opset < 17:
        raise ValueError(f'ONNX opset must be 17 or newer, got {opset}')
    wrapped = TupleOutputs(model.eval()).eval()
    with torch.no_grad():
        wrapped(example)  # eager run: a bad example fails here with the model's own clear error
    shapes = _dynamic_shapes(dynamic, size_multiple)
    if dynamic and example.shape[0] == 1:  # torch.export specialises size-1 dimensions
        example = example.expand(2, *example.shape[1:]).contiguous()
    with torch.no_grad(), atomic_path(path) as tmp:
        if fmt == 'onnx':
            names = _output_names(wrapped, example)
            program = torch.onnx.export(wrapped, (example,), dynamo=True, opset_version=opset,
                                        input_names=['x'], output_names=names,
                                        dynamic_shapes=shapes)
            program.save(str(tmp))
        elif fmt == 'torchscript':
            torch.jit.save(torch.jit.trace(wrapped, example, check_trace=False), str(tmp))
        else:
            torch.export.save(torch.export.export(wrapped, (example,), dynamic_shapes=shapes), str(tmp))
    return Path(path)


def run_exported(path: Union[str, Path], fmt: str, x: torch.Tensor) -> List[torch.Tensor]:
    """Run an exported file on ``x`` (ONNX through onnxruntime) and return its outputs."""
    path = str(path)
    if fmt == 'onnx':
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
        outputs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        return [torch.from_numpy(out) for out in outputs]
    if fmt == 'torchscript':
        return list(torch.jit.load(path)(x))
    if fmt == 'exported-program':
        return list(torch.export.load(path).module()(x))
    raise ValueError(f'export format must be one of {FORMATS}, got {fmt!r}')


def max_abs_difference(model: nn.Module, path: Union[str, Path], fmt: str,
                       inputs: Sequence[torch.Tensor]) -> float:
    """Largest |exported - PyTorch| over all outputs for each of ``inputs``."""
    model.eval()
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            reference = TupleOutputs(model)(x)
        exported = run_exported(path, fmt, x)
        if len(exported) != len(reference):
            raise RuntimeError(f'{path} returned {len(exported)} outputs, PyTorch {len(reference)}')
        for a, b in zip(reference, exported):
            if a.shape != b.shape:
                raise RuntimeError(f'{path}: output shape {tuple(b.shape)} != PyTorch {tuple(a.shape)}')
            worst = max(worst, (a - b).abs().max().item())
    return worst
