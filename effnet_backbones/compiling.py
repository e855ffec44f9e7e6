"""``torch.compile`` for training with an activation-memory budget.

Under ``torch.compile`` the min-cut partitioner of AOTAutograd decides which forward values the
backward keeps and which it recomputes. By default it keeps what makes the step fastest; with
``torch._functorch.config.activation_memory_budget`` below 1 it keeps at most that share of the
default's saved bytes and recomputes the rest (cheapest recompute first: the element-wise BN,
SiLU and gating ops inductor fuses into the backward kernels). For EfficientNets, whose saved
activations are mostly those cheap element-wise outputs, a budget of 0.5 halves the saved
activations at a small cost in time (docs/benchmarks.md, "Compiled with a memory budget").

The budget is read when a graph is compiled, and compilation happens lazily at a call (the first
one, and any recompilation after a guard fails), so :func:`compile_model` sets it around every
call of the compiled module rather than once: other compiled code in the process keeps its own.
Each budgeted model gets graphs of its own (see :func:`_own_code`).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

__all__ = ['compile_model', 'check_memory_budget']


def check_memory_budget(memory_budget: Any, name: str = 'memory_budget') -> Optional[float]:
    """``memory_budget`` as a float in [0, 1] (None stays None); a clear error otherwise.

    Args:
        memory_budget: share of the compiler's default saved activations to keep (0: recompute
            everything a full checkpoint would, 1: the compiler's fastest plan).
        name: what the error message calls the value (a config key or option).
    """
    if memory_budget is None:
        return None
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)) \
            or not 0.0 <= float(memory_budget) <= 1.0:
        raise ValueError(f'{name}={memory_budget!r}: expected a number in [0, 1] (the share of '
                         'the compiled graph\'s default saved activations to keep), or None')
    return float(memory_budget)


def compile_model(model: nn.Module, memory_budget: Optional[float] = None,
                  **compile_kwargs: Any) -> nn.Module:
    """Compile ``model`` in place (as ``nn.Module.compile``: parameters, buffers and state-dict
    keys unchanged) and return it; with ``memory_budget`` its compiled graphs keep at most that
    share of the saved activations the compiler would keep by default.

    Args:
        model: any module; its calls (forward and hooks) run compiled from now on.
        memory_budget: None (the compiler's default plan) or a number in [0, 1]; 0.5 halves the
            saved activations of an EfficientNet training step (docs/benchmarks.md).
        **compile_kwargs: passed to ``torch.compile`` (``backend``, ``mode``, ``dynamic`` ...).
    """
    memory_budget = check_memory_budget(memory_budget)
    if memory_budget is None:
        model.compile(**compile_kwargs)
        return model
    if not hasattr(torch._functorch.config, 'activation_memory_budget'):
        raise RuntimeError(f'memory_budget={memory_budget}: this torch ({torch.__version__}) has '
                           'no activation memory budget (torch >= 2.4 has); use memory_budget=None')
    compiled_call = torch.compile(_own_code(model), **compile_kwargs)

    @functools.wraps(compiled_call)
    def call_with_budget(*args: Any, **kwargs: Any) -> Any:
        # set per call: compilation (and any recompilation) happens inside the call
        with torch._functorch.config.patch(activation_memory_budget=memory_budget):
            return compiled_call(*args, **kwargs)

    model._compiled_call_impl = call_with_budget  # where nn.Module.compile puts its function
    return model


def _own_code(model: nn.Module) -> Callable[..., Any]:
    """``model``'s call as a function with a code object of its own.

    TorchDynamo keeps compiled graphs per code object and, for modules, shares them between
    instances of a class; the budget is not among its guards, so a second model of the same class
    would reuse the graphs (and the saving decisions) compiled for the first. A fresh code object
    gives each budgeted model its own cache.
    """
    def call(*args: Any, **kwargs: Any) -> Any:
        return model._call_impl(*args, **kwargs)

    call.__code__ = call.__code__.replace()  # an equal but distinct code object
    return call
