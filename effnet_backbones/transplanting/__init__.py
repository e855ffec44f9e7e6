"""Progressive transplanting: grow a trained EfficientNet Bi (or a model built on one) into Bj, j >= i.

Widths only grow along the family and kernel sizes are equal, so every source tensor fits in the
leading slice of its destination tensor. In ``'exact'`` mode (the default) the grown model computes,
on the source's channels, exactly what the source computed at the moment of transplant:

- each source tensor (weights, biases, BN affine parameters *and* running statistics) is copied
  into the leading slice of the destination tensor (U-Net decoder inputs, which concatenate two
  growing tensors, run by run);
- weights from channels the source did not have into channels it had are zeroed, in every
  non-depthwise convolution and linear layer (pointwise expansion, projection, SE reduce and
  expand, scSE gates, decoder convolutions, heads); depthwise convolutions and BN act per channel;
- blocks a deeper variant appends to a stage start as identities: they all have a skip, and the
  last norm of their residual branch gets weight and bias zero;
- scSE on a tap that the source did not gate starts as an identity (both gates at 0.5).

New channels and blocks keep the destination's initialisation elsewhere, so they learn from the
first step (an appended block's branch first through its last norm's weight and bias, which get
gradients at once; its other weights from the second step).

``'net2wider'`` mode (Net2Net's Net2WiderNet) keeps the *whole* function instead: every new
channel replicates a source channel (a map that depends only on the two widths, so tensors that
are added get the same one; :meth:`ChannelMap.sources`), each weight reading a replicated channel
gets its share of the source weight plus a small zero-sum noise that breaks the copies' symmetry,
and nothing is zeroed but the identities above. Every destination channel then computes the
source channel it replicates; check it with ``max_difference(src, dst, x, channels='all')``.

``'plain'`` mode only copies the overlapping slices, for comparison.

Modules: ``pairing`` (find and check the EfficientNets of two models, name the source of each
destination module), ``maps`` (channel maps of decoders, identities for added blocks), ``report``,
``sources`` (a checkpoint as the source), ``core`` (:func:`transplant`, :func:`grow_backbone`).
"""
from ..growth import TransplantError
from .core import MODES, Difference, grow_backbone, max_difference, transplant
from .maps import MAP_RULES, SMP_EXACT, smp_unet_rule
from .pairing import find_backbones
from .report import PartReport, TransplantReport

__all__ = ['MODES', 'SMP_EXACT', 'TransplantError', 'PartReport', 'TransplantReport',
           'transplant', 'grow_backbone', 'find_backbones', 'max_difference', 'Difference',
           'MAP_RULES', 'smp_unet_rule']
