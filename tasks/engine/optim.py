"""Optimiser recipes: which parameters get weight decay, and TF-EfficientNet's RMSprop.

- :func:`no_decay_paramwise_cfg`: an MMEngine ``paramwise_cfg`` (for
  ``optim_wrapper.paramwise_cfg``, read by ``DefaultOptimWrapperConstructor``) that gives no
  weight decay to norm layers, biases and the attention gates (SE in the MBConv blocks, scSE on
  the encoder taps, smp's decoder scSE). Decay pulls a weight towards 0; for a norm's scale or a
  sigmoid gate's logits that is a pull towards "switch this channel off", not a regulariser.
  Only plain convolution and linear weights keep the configured ``weight_decay``. This is the
  timm / "bag of tricks" rule (no decay for 1-d parameters) plus the gates' conv weights.
- ``effnet_backbones.RMSpropTF``: timm's :class:`timm.optim.RMSpropTF` (TensorFlow's RMSprop:
  epsilon inside the square root, the learning rate applied inside the momentum buffer) in the
  MMEngine optimiser registry of scope ``effnet_backbones`` (:mod:`tasks.engine.registry`);
  ``configs/_base_/schedules/rmsprop_tf_cosine_4k.py`` uses it as the EfficientNet paper trained.
- ``effnet_backbones.FastOptimWrapperConstructor`` (:class:`FastOptimWrapperConstructor`): the
  shipped schedules' optimiser constructor: fused (or multi-tensor) optimiser steps and gradient
  clipping, and equal ``paramwise_cfg`` groups merged, for the same updates in less time.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIMIZERS

__all__ = ['NO_DECAY_GATE_KEYS', 'FastOptimWrapperConstructor', 'fastest_implementation',
           'merge_param_groups', 'no_decay_paramwise_cfg']

#: Substrings of parameter names (MMEngine ``custom_keys`` match ``module.path.param`` names by
#: substring) of the attention gates, weights and biases alike:
#: ``.se.`` the MBConv blocks' squeeze-excitation (``effnet_backbones.layers.SqueezeExcite``:
#: ``se.reduce``, ``se.expand``; a block's cSE/scSE attention sits under ``se.`` too),
#: ``channel_gate`` / ``spatial_gate`` the scSE on the encoder taps (``layers.SCSE``,
#: ``ChannelSE``, ``SpatialSE``), ``.cSE.`` / ``.sSE.`` smp's ``SCSEModule``
#: (``decoder_attention_type='scse'``).
NO_DECAY_GATE_KEYS = ('.se.', 'channel_gate', 'spatial_gate', '.cSE.', '.sSE.')


def no_decay_paramwise_cfg(**extra: Any) -> Dict[str, Any]:
    """``paramwise_cfg`` with no weight decay for norms, biases and SE / scSE gates.

    ``norm_decay_mult=0`` covers every parameter of BatchNorm, SyncBatchNorm, GroupNorm,
    LayerNorm and InstanceNorm layers; ``bias_decay_mult=0`` every other bias; ``flat_decay_mult=0``
    any other 1-d parameter; ``custom_keys`` (:data:`NO_DECAY_GATE_KEYS`, ``decay_mult=0``) the
    gates' conv weights. The learning rate is unchanged everywhere. The optimiser needs a
    ``weight_decay`` for MMEngine to accept the multipliers.

    Args:
        extra: further ``paramwise_cfg`` keys, merged in (``custom_keys`` are merged key by key).
    """
    cfg: Dict[str, Any] = dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={key: dict(decay_mult=0.0) for key in NO_DECAY_GATE_KEYS},
    )
    extra = copy.deepcopy(extra)
    cfg['custom_keys'].update(extra.pop('custom_keys', None) or {})
    cfg.update(extra)
    return cfg


# ------------------------------------------------------------------ the fastest optimiser step
#: the keys of a param group that choose an implementation, not the training state
IMPLEMENTATION_KEYS = ('fused', 'foreach')


def fastest_implementation(optimizer_cls: type, device: torch.device) -> Dict[str, bool]:
    """``{'fused': True}`` where ``optimizer_cls`` has a fused kernel for ``device``, else
    ``{'foreach': True}`` where it takes that argument, else ``{}``.

    PyTorch picks the per-parameter ("for-loop") implementation on CPU by default: one Python
    iteration and several small kernels per parameter tensor. For a B4 U-Net (496 tensors) the
    clipping + AdamW part of a 2-core CPU step went from 333 to 175 ms (docs/benchmarks.md, "The
    optimiser step"). Support is probed on a one-element tensor, so torch versions without a
    fused kernel for the device (CPU before 2.4) get the next best.
    """
    accepted = inspect.signature(optimizer_cls.__init__).parameters
    probe = [torch.zeros(1, device=device, requires_grad=True)]
    for key in IMPLEMENTATION_KEYS:
        if key not in accepted:
            continue
        try:
            optimizer_cls(probe, **{key: True})
        except (RuntimeError, ValueError, TypeError):
            continue
        return {key: True}
    return {}


def merge_param_groups(groups: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Param groups with equal settings as one group each, in order of first appearance.

    MMEngine's ``paramwise_cfg`` gives every parameter its own group; a multi-tensor or fused
    step then runs once per tensor. Merged groups hold the same parameters with the same
    settings, so the update is the same; groups are told apart by every key but ``params``.
    """
    merged: Dict[Tuple, Dict[str, Any]] = {}
    for group in groups:
        key = tuple(sorted((name, repr(value)) for name, value in group.items()
                           if name != 'params'))
        if key in merged:
            merged[key]['params'].extend(group['params'])
        else:
            merged[key] = {**group, 'params': list(group['params'])}
    return list(merged.values())


def _load_older_state(optimizer: torch.optim.Optimizer,
                      state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """A state dict saved before the groups were merged (one group per parameter) regrouped as
    the optimiser's groups; every loaded group keeps this optimiser's implementation keys (the
    checkpoint's choice of fused or for-loop kernels is not training state)."""
    groups = state_dict['param_groups']
    if len(groups) != len(optimizer.param_groups):
        regrouped = merge_param_groups(groups)
        if len(regrouped) == len(optimizer.param_groups):
            groups = regrouped  # otherwise torch's own error names the mismatch
    implementation = {key: optimizer.defaults[key] for key in IMPLEMENTATION_KEYS
                      if key in optimizer.defaults}
    groups = [{**group, **implementation} for group in groups]
    return {**state_dict, 'param_groups': groups}


class FastOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """MMEngine's default constructor, with the fastest optimiser step the device allows.

    - the optimiser gets ``fused=True`` where PyTorch has a fused kernel for the model's device
      (AdamW, Adam and SGD on CPU from torch 2.4, and on CUDA), else ``foreach=True``
      (:func:`fastest_implementation`); a ``fused`` or ``foreach`` in the config is kept as set;
    - gradient clipping by norm or value gets ``foreach=True`` unless the config sets it;
    - with a ``paramwise_cfg``, parameters with equal settings share one group
      (:func:`merge_param_groups`), and checkpoints saved with one group per parameter still
      load (resume) into the merged groups.

    Updates equal the default implementation's to float rounding (tests/tasks/engine/
    test_optim_recipes.py). Use it as ``optim_wrapper.constructor =
    'effnet_backbones.FastOptimWrapperConstructor'`` (the shipped schedules do).
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        module = model.module if hasattr(model, 'module') else model
        device = next((p.device for p in module.parameters()), torch.device('cpu'))
        optimizer_cls = self.optimizer_cfg['type']
        if isinstance(optimizer_cls, str):
            with OPTIMIZERS.switch_scope_and_registry(None) as registry:
                optimizer_cls = registry.get(optimizer_cls)
        if optimizer_cls is None:
            raise ValueError(f'optim_wrapper.optimizer.type: unknown optimiser '
                             f'{self.optimizer_cfg["type"]!r}')
        if not any(key in self.optimizer_cfg for key in IMPLEMENTATION_KEYS):
            self.optimizer_cfg = {**self.optimizer_cfg,
                                  **fastest_implementation(optimizer_cls, device)}
        clip_grad = self.optim_wrapper_cfg.get('clip_grad')
        if clip_grad and 'foreach' not in clip_grad:
            self.optim_wrapper_cfg = {**self.optim_wrapper_cfg,
                                      'clip_grad': {**clip_grad, 'foreach': True}}
        wrapper = super().__call__(model)
        wrapper.optimizer.register_load_state_dict_pre_hook(_load_older_state)
        return wrapper

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: Optional[Union[int, float]] = None) -> None:
        """MMEngine's per-parameter groups, merged where equal once the whole model is in."""
        super().add_params(params, module, prefix, is_dcn_module)
        if not prefix:  # the outermost call: every parameter has its group
            params[:] = merge_param_groups(params)
