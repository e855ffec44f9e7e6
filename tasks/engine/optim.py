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
"""
from __future__ import annotations

import copy
from typing import Any, Dict

__all__ = ['NO_DECAY_GATE_KEYS', 'no_decay_paramwise_cfg']

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
