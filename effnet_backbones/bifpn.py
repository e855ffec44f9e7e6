"""BiFPN: EfficientDet's weighted bidirectional feature pyramid over the backbone's taps.

Tan et al. 2020 (EfficientDet) fuse the pyramid levels P3-P7 in repeated cells. Each cell runs a
top-down pass (P6 ... P3, each fused with the level above) and then a bottom-up pass (P4 ... P7,
each fused with every earlier map of its level and the finished level below). A fusion node
resamples its inputs to its level, sums them with learnable non-negative weights, and refines
the sum with activation -> depthwise-separable 3x3 conv -> BN.

The graph is :func:`bifpn_graph`, data rather than code, so cells, checkpointing and descriptions
read the same table. These facts make the parameter count and the outputs equal to those of the
``effdet`` package's ``tf_efficientdet_d*`` (``docs/efficientdet.md``):

- P6 comes from the stride-32 tap by a 1x1 conv + BN to the BiFPN width and a 3x3 stride-2 max
  pool; P7 from P6 by the max pool alone.
- In the first cell the backbone taps are not projected once: every node that reads a tap whose
  width differs from the BiFPN's gets its own 1x1 conv + BN (P4 and P5 feed two nodes each, so
  they get two projections each). Later cells read width-wide maps and project nothing.
- Node and projection convs keep a bias before their BN (``conv_bias``), as the TF-ported weights
  do; it is redundant but part of the parameter count and of those weights.
- Upsampling is nearest-neighbour to the target level's size; downsampling is 3x3 stride-2 max
  pooling, TF 'same' padded (with -inf) or symmetric like the backbone's convs.

:class:`EffNetBiFPN` puts the neck on our backbone with torchvision's detection interface
(``out_channels`` and an ``OrderedDict`` 'p3' ... 'p7'), like
:class:`~effnet_backbones.adapters.torchvision.EffNetFPN`.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .adapters.torchvision import _build_backbone
from .backbone import EfficientNet
from .body import ActSpec, NormSpec
from .features import FeatureInfo, TapInfo
from .layers import (PADDING_MODES, create_conv2d, resolve_act_layer, resolve_norm_layer,
                     same_padding)
from .layers.checkpoint import checkpoint_module
from .layers.norm_act import ActFactory, NormFactory

__all__ = ['BiFPN', 'BiFPNCell', 'EffNetBiFPN', 'FusionNode', 'FusionNodeSpec', 'FUSION_METHODS',
           'NECK_CP_MODES', 'SeparableConv2d', 'bifpn_graph', 'check_fusion', 'check_positive_int']

#: Fusion of a node's inputs: 'fast' (weights ReLU'd and normalised by their sum: the paper's
#: fast normalised fusion, effdet's 'fastattn'), 'softmax' (softmax-normalised weights, effdet's
#: 'attn') or 'sum' (no weights; effdet's D6/D7).
FUSION_METHODS = ('fast', 'softmax', 'sum')
_FUSION_ALIASES = {'fastattn': 'fast', 'attn': 'softmax'}
#: Activation checkpointing of the neck: per cell or per fusion node.
NECK_CP_MODES = ('cell', 'node')
#: The backbone's checkpointing granularity -> the neck's, when the neck follows the backbone.
_CP_OF_BACKBONE = {'stage': 'cell', 'block': 'node'}
#: Pyramid levels that a backbone tap can be: P1 (stride 2, backbone level 0) ... P5 (stride 32).
TAP_LEVELS = (1, 2, 3, 4, 5)
# keeps the fast-fusion normaliser away from 0 when every weight has been ReLU'd to 0 (paper: 1e-4)
_FAST_FUSION_EPS = 1e-4


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum`` (bools refused), else a ValueError naming it."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')
    return value


def check_fusion(fusion: str) -> str:
    """The fusion method named by ``fusion`` (effdet's names accepted), or a ValueError."""
    key = _FUSION_ALIASES.get(fusion, fusion) if isinstance(fusion, str) else fusion
    if key not in FUSION_METHODS:
        raise ValueError(f'fusion must be one of {FUSION_METHODS} (effdet names: '
                         f'{", ".join(_FUSION_ALIASES)}), got {fusion!r}')
    return key


def _check_levels(min_level: int, max_level: int) -> None:
    if not isinstance(min_level, int) or isinstance(min_level, bool) or min_level not in TAP_LEVELS:
        raise ValueError(f'min_level must be one of {TAP_LEVELS} (P1 ... P5, the backbone taps at '
                         f'strides 2 ... 32), got {min_level!r}')
    if not isinstance(max_level, int) or isinstance(max_level, bool) or max_level <= min_level:
        raise ValueError(f'max_level must be an int above min_level={min_level} (a BiFPN fuses '
                         f'two or more levels), got {max_level!r}')


def _check_neck_cp(with_cp: Union[None, bool, str]) -> Optional[str]:
    if with_cp is None or with_cp is False:
        return None
    if with_cp is True:
        return 'cell'
    if with_cp in NECK_CP_MODES:
        return with_cp
    raise ValueError(f'with_cp must be None (follow the backbone), False, True (= "cell") or one '
                     f'of {NECK_CP_MODES}, got {with_cp!r}')


# ---------------------------------------------------------------------------------------- graph
@dataclass(frozen=True)
class FusionNodeSpec:
    """One fusion node of a BiFPN cell.

    Attributes:
        level: pyramid level the node produces (3 for P3).
        inputs: positions of its inputs in the cell's running list of maps: the cell's inputs
            (min_level ... max_level) first, then each node's output in node order. The first
            input is always at the node's own level and sets the output size.
    """

    level: int
    inputs: Tuple[int, ...]


def bifpn_graph(min_level: int = 3, max_level: int = 7
                ) -> Tuple[Tuple[FusionNodeSpec, ...], Tuple[int, ...]]:
    """The nodes of one BiFPN cell and the positions of its outputs (min_level ... max_level).

    Top-down, from max_level - 1 to min_level: the level's newest map and the newest map of the
    level above. Bottom-up, from min_level + 1 to max_level: every map of the level so far (the
    cell input and, below max_level, the top-down node) and the newest map of the level below.
    """
    levels = range(min_level, max_level + 1)
    maps_of: Dict[int, List[int]] = {level: [slot] for slot, level in enumerate(levels)}
    nodes: List[FusionNodeSpec] = []

    def add(level: int, inputs: List[int]) -> None:
        nodes.append(FusionNodeSpec(level, tuple(inputs)))
        maps_of[level].append(len(levels) + len(nodes) - 1)

    for level in range(max_level - 1, min_level - 1, -1):
        add(level, [maps_of[level][-1], maps_of[level + 1][-1]])
    for level in range(min_level + 1, max_level + 1):
        add(level, maps_of[level] + [maps_of[level - 1][-1]])
    return tuple(nodes), tuple(maps_of[level][-1] for level in levels)


# ---------------------------------------------------------------------------------------- layers
class SeparableConv2d(nn.Module):
    """Depthwise 3x3 conv (no bias) then pointwise 1x1 conv: EfficientDet's only conv shape.

    Args:
        in_channels: input channels (also the depthwise groups).
        out_channels: output channels of the pointwise conv.
        padding: 'same' (TF ports) or 'symmetric'; equal for a 3x3 stride-1 conv.
        bias: bias on the pointwise conv.
    """

    def __init__(self, in_channels: int, out_channels: int, padding: str = 'same',
                 bias: bool = True) -> None:
        super().__init__()
        self.depthwise = create_conv2d(in_channels, in_channels, 3, groups=in_channels,
                                       padding=padding)
        self.pointwise = create_conv2d(in_channels, out_channels, 1, padding=padding, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class Projection(nn.Module):
    """1x1 conv + norm bringing a map to the BiFPN width (no activation).

    Args:
        in_channels: channels of the map.
        out_channels: the BiFPN width.
        norm_layer: norm factory.
        bias: bias on the conv (the TF-ported weights have one before the norm).
    """

    def __init__(self, in_channels: int, out_channels: int, norm_layer: NormFactory,
                 bias: bool = True) -> None:
        super().__init__()
        self.conv = create_conv2d(in_channels, out_channels, 1, bias=bias)
        self.norm = norm_layer(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class MaxPoolDown(nn.Module):
    """3x3 stride-2 max pooling to the next coarser level, padded like the backbone's convs.

    Args:
        padding: 'same' (TF: pad at run time with -inf, the extra pixel after) or 'symmetric'
            (one pixel each side). Both give ceil(side / 2), the backbone's own level sizes.
    """

    def __init__(self, padding: str = 'same') -> None:
        super().__init__()
        if padding not in PADDING_MODES:
            raise ValueError(f'padding must be one of {PADDING_MODES}, got {padding!r}')
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 'symmetric':
            return F.max_pool2d(x, 3, 2, 1)
        top, bottom = same_padding(x.shape[-2], 3, 2, 1)
        left, right = same_padding(x.shape[-1], 3, 2, 1)
        return F.max_pool2d(F.pad(x, [left, right, top, bottom], value=-math.inf), 3, 2)

    def extra_repr(self) -> str:
        return f'padding={self.padding!r}'


class Resample(nn.Module):
    """One node input brought to the node's level: projected if its width differs, then pooled
    (from the level below) or upsampled by nearest neighbour (from the level above).

    Args:
        in_channels: channels of the input map.
        out_channels: the BiFPN width.
        level_step: node level minus input level: 1 (pool), 0 (none) or -1 (upsample).
        padding: the pooling's padding mode.
        norm_layer: norm of the projection.
        bias: bias on the projection conv.
    """

    def __init__(self, in_channels: int, out_channels: int, level_step: int, padding: str,
                 norm_layer: NormFactory, bias: bool = True) -> None:
        super().__init__()
        if level_step not in (-1, 0, 1):
            raise ValueError(f'a BiFPN input is at most one level away, got a step of {level_step}')
        self.project = (Projection(in_channels, out_channels, norm_layer, bias)
                        if in_channels != out_channels else nn.Identity())
        self.pool = MaxPoolDown(padding) if level_step == 1 else nn.Identity()
        self.upsample = level_step == -1

    def forward(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:
        """``x`` at the node's level; ``size`` (H, W) is that level's size (for upsampling)."""
        x = self.pool(self.project(x))
        if self.upsample:
            x = F.interpolate(x, size=size, mode='nearest')
        return x


class FusionNode(nn.Module):
    """A BiFPN node: resample the inputs, fuse them, then activation, separable conv and norm.

    Args:
        level: pyramid level of the node.
        input_levels: level of each input; the first must be ``level``.
        input_channels: channels of each input.
        width: BiFPN width (output channels).
        fusion: one of :data:`FUSION_METHODS`.
        padding: padding mode of the pooling and convs.
        norm_layer: norm factory (after the separable conv and in projections).
        act_layer: activation applied to the fused sum, before the separable conv.
        conv_bias: bias on the pointwise and projection convs.
    """

    def __init__(self, level: int, input_levels: Sequence[int], input_channels: Sequence[int],
                 width: int, fusion: str = 'fast', padding: str = 'same',
                 norm_layer: NormFactory = nn.BatchNorm2d, act_layer: ActFactory = nn.SiLU,
                 conv_bias: bool = True) -> None:
        super().__init__()
        if not input_levels or input_levels[0] != level:
            raise ValueError(f'the first input of a P{level} node must be at level {level} (it '
                             f'sets the output size), got input levels {tuple(input_levels)}')
        self.level = level
        self.fusion = check_fusion(fusion)
        self.resample = nn.ModuleList(
            Resample(channels, width, level - input_level, padding, norm_layer, conv_bias)
            for input_level, channels in zip(input_levels, input_channels))
        # one scalar per input; registered after the resampling as in the TF-ported weights
        self.weights = (nn.Parameter(torch.ones(len(input_levels))) if self.fusion != 'sum'
                        else None)
        self.act = act_layer()
        self.conv = SeparableConv2d(width, width, padding, bias=conv_bias)
        self.norm = norm_layer(width)

    def fusion_weights(self, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """The normalised weight of each input (None for 'sum')."""
        if self.weights is None:
            return None
        weights = self.weights.to(dtype)
        if self.fusion == 'softmax':
            return torch.softmax(weights, dim=0)
        weights = F.relu(weights)
        return weights / (weights.sum() + _FAST_FUSION_EPS)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        size = list(inputs[0].shape[-2:])
        maps = [resample(x, size) for resample, x in zip(self.resample, inputs)]
        weights = self.fusion_weights(maps[0].dtype)
        fused = maps[0] if weights is None else maps[0] * weights[0]
        for index in range(1, len(maps)):
            fused = fused + (maps[index] if weights is None else maps[index] * weights[index])
        return self.norm(self.conv(self.act(fused)))

    def extra_repr(self) -> str:
        return f'level={self.level}, fusion={self.fusion!r}'


class BiFPNCell(nn.Module):
    """One BiFPN repeat: the nodes of :func:`bifpn_graph` over maps min_level ... max_level.

    Args:
        in_channels: channels of each input level, min_level first.
        width: BiFPN width.
        min_level: level of the first input.
        nodes: the cell's nodes; outputs: positions of its outputs (from :func:`bifpn_graph`).
        **node_options: :class:`FusionNode` options (fusion, padding, norm_layer, act_layer,
            conv_bias).
    """

    def __init__(self, in_channels: Sequence[int], width: int, min_level: int,
                 nodes: Sequence[FusionNodeSpec], outputs: Sequence[int],
                 **node_options: Any) -> None:
        super().__init__()
        levels = [min_level + slot for slot in range(len(in_channels))]
        channels = list(in_channels)
        built = []
        for spec in nodes:
            built.append(FusionNode(spec.level, [levels[i] for i in spec.inputs],
                                    [channels[i] for i in spec.inputs], width, **node_options))
            levels.append(spec.level)
            channels.append(width)
        self.nodes = nn.ModuleList(built)
        self.node_inputs: List[List[int]] = [list(spec.inputs) for spec in nodes]
        self.outputs: List[int] = list(outputs)
        # set by BiFPN: recompute each node in backward instead of keeping its activations
        self.checkpoint_nodes = False

    def forward(self, levels: List[torch.Tensor]) -> List[torch.Tensor]:
        maps = list(levels)
        recompute = self.checkpoint_nodes and self.training and torch.is_grad_enabled()
        for node, positions in zip(self.nodes, self.node_inputs):
            inputs = [maps[i] for i in positions]
            # non-reentrant checkpointing takes the list as it is and recomputes node(inputs)
            maps.append(checkpoint_module(node, inputs) if recompute else node(inputs))
        return [maps[i] for i in self.outputs]


def _glorot_uniform_(weight: torch.Tensor, groups: int = 1) -> None:
    """Glorot-uniform (fan average) with the fan-out divided by the groups, as TF counts it for
    depthwise kernels (torch's ``xavier_uniform_`` would count every output channel)."""
    receptive = weight[0][0].numel()
    fan_in = weight.shape[1] * receptive
    fan_out = weight.shape[0] * receptive // groups
    limit = math.sqrt(6.0 / max(1.0, fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-limit, limit)


def init_neck_weights_(module: nn.Module) -> None:
    """EfficientDet's neck initialisation: Glorot-uniform convs, zero biases, unit norms."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            _glorot_uniform_(m.weight, m.groups)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BiFPN(nn.Module):
    """EfficientDet's BiFPN over feature maps at consecutive levels from ``min_level``.

    Levels above the deepest input (P6, P7 over stride 8/16/32 taps) are made by a projection
    (if the deepest input is not ``width`` wide) and 3x3 stride-2 max pooling, then ``repeats``
    cells fuse all levels. ``forward`` takes the input maps, finest first, and returns
    ``max_level - min_level + 1`` maps of ``width`` channels, finest first.

    Args:
        in_channels: channels of each input map, the first at ``min_level``.
        width: channels of every BiFPN map (64 for D0 ... 384 for D6/D7).
        repeats: number of cells (3 for D0 ... 8 for D6/D7).
        fusion: one of :data:`FUSION_METHODS`.
        min_level: pyramid level of the first input (3: stride 8).
        max_level: deepest output level (7: stride 128).
        padding: 'same' (TF ports, effdet's ``tf_`` models) or 'symmetric'.
        norm_layer, norm_eps, norm_momentum: the norm (name, dict or factory) and its BN settings;
            the defaults are effdet's (TF's eps 1e-3, momentum 0.99 in TF = 0.01 in PyTorch).
        act_layer: activation of the fusion nodes (Swish).
        conv_bias: bias before each norm, as the TF-ported weights have.
        with_cp: activation checkpointing in training: None/False, True (= 'cell') or 'node'.
    """

    def __init__(self, in_channels: Sequence[int], width: int = 64, repeats: int = 3,
                 fusion: str = 'fast', min_level: int = 3, max_level: int = 7,
                 padding: str = 'same', norm_layer: NormSpec = 'bn', norm_eps: float = 1e-3,
                 norm_momentum: float = 0.01, act_layer: ActSpec = 'swish',
                 conv_bias: bool = True, with_cp: Union[None, bool, str] = None) -> None:
        super().__init__()
        self.width = check_positive_int('width', width)
        self.repeats = check_positive_int('repeats', repeats)
        self.fusion = check_fusion(fusion)
        _check_levels(min_level, max_level)
        if padding not in PADDING_MODES:
            raise ValueError(f'padding must be one of {PADDING_MODES}, got {padding!r}')
        num_levels = max_level - min_level + 1
        if isinstance(in_channels, int) or not 1 <= len(in_channels) <= num_levels:
            raise ValueError(f'in_channels must list 1 ... {num_levels} input widths (levels '
                             f'P{min_level} ... P{max_level}), got {in_channels!r}')
        self.in_channels = [check_positive_int('in_channels entry', c) for c in in_channels]
        self.min_level, self.max_level, self.padding = min_level, max_level, padding
        norm = resolve_norm_layer(norm_layer, norm_eps, norm_momentum)
        act = resolve_act_layer(act_layer)

        # P6, P7 ...: each from the level below; only the first can need a projection
        extra = []
        channels = self.in_channels[-1]
        for _ in range(num_levels - len(self.in_channels)):
            extra.append(Resample(channels, width, 1, padding, norm, conv_bias))
            channels = width
        self.extra_levels = nn.ModuleList(extra)

        nodes, outputs = bifpn_graph(min_level, max_level)
        level_channels = self.in_channels + [width] * len(extra)
        self.cells = nn.ModuleList()
        for _ in range(repeats):
            self.cells.append(BiFPNCell(level_channels, width, min_level, nodes, outputs,
                                        fusion=self.fusion, padding=padding, norm_layer=norm,
                                        act_layer=act, conv_bias=conv_bias))
            level_channels = [width] * num_levels
        # which node of a cell produces each output level (for descriptions)
        self.output_nodes = [position - num_levels for position in outputs]
        self.with_cp = with_cp
        init_neck_weights_(self)

    @property
    def with_cp(self) -> Optional[str]:
        """Checkpointing mode: None, 'cell' or 'node' (settable)."""
        return self._with_cp

    @with_cp.setter
    def with_cp(self, mode: Union[None, bool, str]) -> None:
        self._with_cp = _check_neck_cp(mode)
        for cell in self.cells:
            cell.checkpoint_nodes = self._with_cp == 'node'

    @property
    def num_levels(self) -> int:
        """Number of output levels."""
        return self.max_level - self.min_level + 1

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        """The ``num_levels`` fused maps, finest first, from the input maps, finest first."""
        if len(features) != len(self.in_channels):
            raise ValueError(f'the BiFPN was built for {len(self.in_channels)} input maps '
                             f'(P{self.min_level} ...), got {len(features)}')
        levels = list(features)
        for extra in self.extra_levels:
            levels.append(extra(levels[-1], []))
        recompute = self._with_cp == 'cell' and self.training and torch.is_grad_enabled()
        for cell in self.cells:
            levels = checkpoint_module(cell, levels) if recompute else cell(levels)
        return levels

    def extra_repr(self) -> str:
        return (f'levels=P{self.min_level}-P{self.max_level}, width={self.width}, '
                f'repeats={self.repeats}, fusion={self.fusion!r}')


# ------------------------------------------------------------------------- torchvision adapter
def _pick_taps(backbone: EfficientNet, min_level: int, max_level: int) -> List[int]:
    """Positions, in the backbone's outputs, of its taps at P_min_level ... P5 (or P_max)."""
    if backbone.output_stride != 32:
        raise ValueError(f'a BiFPN needs an output stride of 32 (true strides 8/16/32), but the '
                         f'backbone has output_stride={backbone.output_stride}; leave it at 32')
    tap_levels = _tap_levels(min_level, max_level)
    backbone_levels = tuple(level - 1 for level in tap_levels)  # P3 is backbone level 2
    slots = {info.level: slot for slot, info in enumerate(backbone.feature_info)}
    if any(level not in slots for level in backbone_levels):
        strides = ', '.join(str(2 ** level) for level in tap_levels)
        raise ValueError(f'a BiFPN over P{min_level}-P{max_level} reads backbone levels '
                         f'{backbone_levels} (strides {strides}), but the backbone returns '
                         f'out_indices={backbone.out_indices}; use out_indices={backbone_levels}')
    return [slots[level] for level in backbone_levels]


def _tap_levels(min_level: int, max_level: int) -> Tuple[int, ...]:
    """Pyramid levels read from the backbone: min_level up to P5 (the stride-32 tap)."""
    return tuple(range(min_level, min(max_level, TAP_LEVELS[-1]) + 1))


class EffNetBiFPN(nn.Module):
    """EfficientNet + BiFPN for torchvision detectors: ``OrderedDict`` p3 ... p7, strides 8 ... 128.

    Example::

        neck = EffNetBiFPN(dict(arch='b0', padding='same'), width=64, repeats=3)
        model = torchvision.models.detection.RetinaNet(neck, num_classes=80)

    Inputs whose sides are not multiples of :attr:`size_divisor` (128 for P7) run, but their
    levels do not tile the image evenly: pad them (torchvision's transform pads to 32 by
    default; give it ``size_divisible=model.backbone.size_divisor``).

    Args:
        backbone: an :class:`~effnet_backbones.EfficientNet` whose taps include the levels the
            BiFPN reads (P3-P5 = ``out_indices`` 2, 3, 4; other taps are ignored), a dict of its
            options (``out_indices`` defaults to those levels) or a registry config.
        width, repeats, fusion, min_level, max_level, norm_layer, norm_eps, norm_momentum,
            act_layer, conv_bias: as for :class:`BiFPN`.
        padding: the BiFPN's padding mode; None follows the backbone's.
        with_cp: the BiFPN's checkpointing: None follows the backbone's ``with_cp`` ('stage' ->
            'cell', 'block' -> 'node'), False turns it off, True / 'cell' / 'node' as for BiFPN.
    """

    def __init__(self, backbone: Union[EfficientNet, Dict[str, Any], None] = None,
                 width: int = 64, repeats: int = 3, fusion: str = 'fast', min_level: int = 3,
                 max_level: int = 7, padding: Optional[str] = None, norm_layer: NormSpec = 'bn',
                 norm_eps: float = 1e-3, norm_momentum: float = 0.01,
                 act_layer: ActSpec = 'swish', conv_bias: bool = True,
                 with_cp: Union[None, bool, str] = None) -> None:
        super().__init__()
        _check_levels(min_level, max_level)
        if isinstance(backbone, dict):
            backbone = dict(backbone)
            backbone.setdefault('out_indices',
                                tuple(level - 1 for level in _tap_levels(min_level, max_level)))
        self.body = _build_backbone(backbone)
        self._slots = _pick_taps(self.body, min_level, max_level)
        if with_cp is None:
            with_cp = _CP_OF_BACKBONE.get(self.body.with_cp) if self.body.with_cp else None
        self.bifpn = BiFPN([self.body.out_channels[slot] for slot in self._slots], width=width,
                           repeats=repeats, fusion=fusion, min_level=min_level, max_level=max_level,
                           padding=self.body.padding if padding is None else padding,
                           norm_layer=norm_layer, norm_eps=norm_eps, norm_momentum=norm_momentum,
                           act_layer=act_layer, conv_bias=conv_bias, with_cp=with_cp)
        self.out_channels = width
        self.level_names = tuple(f'p{level}' for level in range(min_level, max_level + 1))

    @property
    def strides(self) -> List[int]:
        """Stride of each returned level: 8, 16, 32, 64, 128 for P3-P7."""
        return [2 ** int(name[1:]) for name in self.level_names]

    @property
    def size_divisor(self) -> int:
        """Input sides should be multiples of this (the deepest stride, 128 for P7)."""
        return 2 ** self.bifpn.max_level

    @property
    def feature_info(self) -> FeatureInfo:
        """One entry per returned level ('p3' ...), produced by the last cell's nodes."""
        last = len(self.bifpn.cells) - 1
        return FeatureInfo([
            TapInfo(level=int(name[1:]), channels=self.out_channels, stride=stride,
                    module=f'bifpn.cells.{last}.nodes.{node}', name=name)
            for name, stride, node in zip(self.level_names, self.strides, self.bifpn.output_nodes)])

    def forward(self, x: torch.Tensor) -> 'OrderedDict[str, torch.Tensor]':
        """``OrderedDict`` of the BiFPN levels ('p3' ... 'p7'), finest first, ``width`` deep."""
        taps = self.body(x)
        levels = self.bifpn([taps[slot] for slot in self._slots])
        return OrderedDict(zip(self.level_names, levels))
