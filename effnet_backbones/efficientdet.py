"""EfficientDet D0-D7 on our backbone: the compound-scaled table, the class/box heads, the network.

The table (:data:`EFFICIENTDET_CONFIGS`) is the ``effdet`` package's ``tf_efficientdet_d0`` ...
``tf_efficientdet_d7``, which follow the paper (Tan et al. 2020, table 1): backbone B0 ... B6
(D7 keeps B6 at a larger input), BiFPN width 64 ... 384, 3 ... 8 BiFPN cells, 3 ... 5 head repeats,
fast normalised fusion except D6/D7, which sum unweighted. Built without weights, each network
has exactly effdet's parameter count (``docs/efficientdet.md``).

The heads are effdet's: one tower per task shared by every level, whose separable convs are
shared but whose norms are not (one BN per level per repeat), then a separable prediction conv
to ``num_anchors * num_classes`` (class net) or ``num_anchors * 4`` (box net) channels. Channel
``a * K + k`` is anchor ``a``'s value ``k``, torchvision's RetinaNet head layout, so
:meth:`EfficientDetHeadNets.flatten` gives torchvision's ``(N, sum(H * W * A), K)``.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .bifpn import EffNetBiFPN, SeparableConv2d, check_fusion, check_positive_int
from .body import ActSpec, NormSpec
from .layers import resolve_act_layer, resolve_norm_layer
from .layers.checkpoint import checkpoint_module
from .layers.memory_efficient import fuses_norm_act, norm_act
from .layers.norm_act import ActFactory, NormFactory
from .spec import check_arch

__all__ = ['EfficientDetConfig', 'EFFICIENTDET_CONFIGS', 'EfficientDetHead', 'EfficientDetHeadNets',
           'EfficientDetNet', 'create_efficientdet', 'list_efficientdets', 'flatten_anchor_outputs',
           'efficientdet_config', 'efficientdet_key', 'efficientdet_backbone_options']

#: effdet's anchor shapes: (width, height) multipliers of the base anchor, per aspect ratio.
ASPECT_RATIOS = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))


@dataclass(frozen=True)
class EfficientDetConfig:
    """One EfficientDet variant (a row of the paper's scaling table).

    Attributes:
        backbone: EfficientNet arch, 'b0' ... 'b6'.
        image_size: the training and test input side of the recipe (px).
        width: BiFPN and head channels.
        repeats: BiFPN cells.
        head_repeats: separable conv + BN + Swish repeats in each head before the prediction.
        fusion: BiFPN node fusion, 'fast', 'softmax' or 'sum'.
        anchor_scale: base anchor side in strides (4: a P3 anchor is 32 px).
        min_level, max_level: pyramid levels (P3-P7).
        num_scales: anchor scales per octave (3: 2^0, 2^(1/3), 2^(2/3)).
        aspect_ratios: (width, height) multipliers of each anchor shape.
        drop_path_rate: the backbone's stochastic depth in effdet's recipe.
    """

    backbone: str
    image_size: int
    width: int
    repeats: int
    head_repeats: int
    fusion: str = 'fast'
    anchor_scale: float = 4.0
    min_level: int = 3
    max_level: int = 7
    num_scales: int = 3
    aspect_ratios: Tuple[Tuple[float, float], ...] = ASPECT_RATIOS
    drop_path_rate: float = 0.2

    def __post_init__(self) -> None:
        check_arch(self.backbone)
        for name in ('image_size', 'width', 'repeats', 'head_repeats', 'num_scales'):
            check_positive_int(name, getattr(self, name))
        check_fusion(self.fusion)
        if not self.aspect_ratios:
            raise ValueError('aspect_ratios must hold at least one (width, height) pair')

    @property
    def num_levels(self) -> int:
        """Pyramid levels (5 for P3-P7)."""
        return self.max_level - self.min_level + 1

    @property
    def num_anchors(self) -> int:
        """Anchors per location (num_scales x aspect ratios = 9)."""
        return self.num_scales * len(self.aspect_ratios)

    @property
    def size_divisor(self) -> int:
        """Input sides must be multiples of the deepest stride (128 for P7)."""
        return 2 ** self.max_level


def _table() -> Dict[str, EfficientDetConfig]:
    # (backbone, image size, BiFPN width, BiFPN cells, head repeats): effdet's tf_efficientdet_d*
    rows = {
        'd0': ('b0', 512, 64, 3, 3), 'd1': ('b1', 640, 88, 4, 3), 'd2': ('b2', 768, 112, 5, 3),
        'd3': ('b3', 896, 160, 6, 4), 'd4': ('b4', 1024, 224, 7, 4), 'd5': ('b5', 1280, 288, 7, 4),
        'd6': ('b6', 1280, 384, 8, 5), 'd7': ('b6', 1536, 384, 8, 5),
    }
    table = {name: EfficientDetConfig(*row) for name, row in rows.items()}
    # the largest two sum their inputs unweighted (effdet: "for training stability"); D7's
    # anchors are larger for its larger input
    table['d6'] = dataclasses.replace(table['d6'], fusion='sum')
    table['d7'] = dataclasses.replace(table['d7'], fusion='sum', anchor_scale=5.0)
    return table


#: 'd0' ... 'd7' -> :class:`EfficientDetConfig`.
EFFICIENTDET_CONFIGS: Dict[str, EfficientDetConfig] = _table()


def list_efficientdets() -> List[str]:
    """Names accepted by :func:`create_efficientdet`: 'efficientdet_d0' ... 'efficientdet_d7'."""
    return [f'efficientdet_{name}' for name in EFFICIENTDET_CONFIGS]


def efficientdet_config(name: str) -> EfficientDetConfig:
    """The table row of 'd0' ... 'd7' (also 'efficientdet_d3', 'tf_efficientdet_d3')."""
    return EFFICIENTDET_CONFIGS[efficientdet_key(name)]


def efficientdet_key(name: str) -> str:
    """'d0' ... 'd7' for any accepted spelling ('efficientdet_d3', 'tf_efficientdet_d3');
    unknown names raise, listing the valid ones."""
    pattern = r'(?:tf_)?(?:efficientdet_)?(d\d)'
    match = re.fullmatch(pattern, name.lower()) if isinstance(name, str) else None
    if match is None or match.group(1) not in EFFICIENTDET_CONFIGS:
        raise ValueError(f'unknown EfficientDet {name!r}; valid: {", ".join(EFFICIENTDET_CONFIGS)} '
                         f'(or {list_efficientdets()[0]} ... {list_efficientdets()[-1]})')
    return match.group(1)


# ---------------------------------------------------------------------------------------- heads
class HeadRepeat(nn.Module):
    """One repeat of a head tower: a separable conv shared by every level, then each level's
    own norm, then the activation.

    Args:
        width: channels in and out.
        num_levels: levels the tower runs on (one norm each).
        norm_layer, act_layer: factories.
        padding: padding mode of the conv.
        conv_bias: bias on the pointwise conv (the TF-ported weights have one before the norm).
        memory_efficient: run norm + activation fused in training (keeps only the norm input).
    """

    def __init__(self, width: int, num_levels: int, norm_layer: NormFactory,
                 act_layer: ActFactory, padding: str = 'same', conv_bias: bool = True,
                 memory_efficient: bool = False) -> None:
        super().__init__()
        self.conv = SeparableConv2d(width, width, padding, bias=conv_bias)
        self.norms = nn.ModuleList(norm_layer(width) for _ in range(num_levels))
        self.act = act_layer()
        self.memory_efficient = bool(memory_efficient)

    def _norm_act(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        # decided per call from the live norm: SyncBN after conversion takes the plain path
        if self.memory_efficient and fuses_norm_act(norm, self.act):
            return norm_act(x, norm, self.act)
        return self.act(norm(x))

    def forward(self, levels: List[torch.Tensor]) -> List[torch.Tensor]:
        if len(levels) != len(self.norms):
            raise ValueError(f'the head was built for {len(self.norms)} levels, got {len(levels)}')
        return [self._norm_act(self.conv(x), norm) for x, norm in zip(levels, self.norms)]


class EfficientDetHead(nn.Module):
    """A class or box net: ``repeats`` :class:`HeadRepeat`s and a separable prediction conv,
    all shared by every level; returns (N, num_anchors * num_outputs, H, W) per level.

    Args:
        width: input channels (the BiFPN width).
        num_outputs: values per anchor (classes, or 4 box deltas).
        num_anchors: anchors per location.
        num_levels: pyramid levels.
        repeats: tower depth.
        norm_layer, act_layer, padding, conv_bias, memory_efficient: as for :class:`HeadRepeat`.
        with_cp: recompute each repeat in backward (training only).
    """

    def __init__(self, width: int, num_outputs: int, num_anchors: int = 9, num_levels: int = 5,
                 repeats: int = 3, norm_layer: NormFactory = nn.BatchNorm2d,
                 act_layer: ActFactory = nn.SiLU, padding: str = 'same', conv_bias: bool = True,
                 memory_efficient: bool = False, with_cp: bool = False) -> None:
        super().__init__()
        check_positive_int('head repeats', repeats)
        self.num_outputs = check_positive_int('num_outputs', num_outputs)
        self.num_anchors = check_positive_int('num_anchors', num_anchors)
        self.repeats = nn.ModuleList(
            HeadRepeat(width, num_levels, norm_layer, act_layer, padding, conv_bias,
                       memory_efficient) for _ in range(repeats))
        self.predict = SeparableConv2d(width, num_anchors * num_outputs, padding, bias=True)
        self.with_cp = bool(with_cp)

    def forward(self, levels: List[torch.Tensor]) -> List[torch.Tensor]:
        recompute = self.with_cp and self.training and torch.is_grad_enabled()
        for repeat in self.repeats:
            levels = checkpoint_module(repeat, levels) if recompute else repeat(levels)
        return [self.predict(x) for x in levels]


def flatten_anchor_outputs(outputs: Sequence[torch.Tensor], values: int) -> torch.Tensor:
    """Per-level (N, A * values, H, W) maps as one (N, sum(H * W * A), values) tensor.

    Order: level (finest first), then row y, column x, then anchor: torchvision's RetinaNet
    head and anchor layout, and effdet's own flattening.
    """
    flat = []
    for x in outputs:
        n, channels, height, width = x.shape
        x = x.view(n, channels // values, values, height, width).permute(0, 3, 4, 1, 2)
        flat.append(x.reshape(n, -1, values))
    return torch.cat(flat, dim=1)


class EfficientDetHeadNets(nn.Module):
    """EfficientDet's class net and box net over the BiFPN levels.

    ``forward(levels)`` returns (class outputs, box outputs): per level (N, A * num_classes, H, W)
    and (N, A * 4, H, W), as effdet; :meth:`flatten` turns them into torchvision's layout.

    Args:
        width: BiFPN width.
        num_classes: classes (no background class: sigmoid / focal-loss scores).
        num_levels: pyramid levels.
        repeats: head repeats (3 for D0-D2 ... 5 for D6/D7).
        num_anchors: anchors per location (9).
        padding: padding mode of the convs.
        norm_layer, norm_eps, norm_momentum, act_layer: as for the BiFPN.
        conv_bias: bias before each norm (TF-ported weights).
        memory_efficient: fused norm + activation in training.
        with_cp: recompute each head repeat in backward.
        prior_prob: initial foreground probability of the class outputs (RetinaNet's 0.01).
    """

    def __init__(self, width: int, num_classes: int = 90, num_levels: int = 5, repeats: int = 3,
                 num_anchors: int = 9, padding: str = 'same', norm_layer: NormSpec = 'bn',
                 norm_eps: float = 1e-3, norm_momentum: float = 0.01,
                 act_layer: ActSpec = 'swish', conv_bias: bool = True,
                 memory_efficient: bool = False, with_cp: bool = False,
                 prior_prob: float = 0.01) -> None:
        super().__init__()
        check_positive_int('width', width)
        self.num_classes = check_positive_int('num_classes', num_classes)
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f'prior_prob must be in (0, 1), got {prior_prob!r}')
        norm = resolve_norm_layer(norm_layer, norm_eps, norm_momentum)
        act = resolve_act_layer(act_layer)
        options = dict(num_anchors=num_anchors, num_levels=num_levels, repeats=repeats,
                       norm_layer=norm, act_layer=act, padding=padding, conv_bias=conv_bias,
                       memory_efficient=memory_efficient, with_cp=with_cp)
        self.class_net = EfficientDetHead(width, num_classes, **options)
        self.box_net = EfficientDetHead(width, 4, **options)
        self.num_anchors = num_anchors
        self.init_weights(prior_prob)

    def init_weights(self, prior_prob: float = 0.01) -> None:
        """effdet's head initialisation: convs normal with std 1/sqrt(fan-in), zero biases, unit
        norms, and class biases at -log((1 - p) / p) so every score starts at ``prior_prob``."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_in', nonlinearity='linear')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        prior_logit = -math.log((1 - prior_prob) / prior_prob)
        nn.init.constant_(self.class_net.predict.pointwise.bias, prior_logit)

    @property
    def with_cp(self) -> bool:
        """Whether each head repeat is recomputed in backward (settable)."""
        return self.class_net.with_cp

    @with_cp.setter
    def with_cp(self, enabled: bool) -> None:
        self.class_net.with_cp = self.box_net.with_cp = bool(enabled)

    def forward(self, levels: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        return self.class_net(levels), self.box_net(levels)

    def flatten(self, class_outputs: Sequence[torch.Tensor], box_outputs: Sequence[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, sum(HWA), num_classes) and (N, sum(HWA), 4), anchors ordered by level, y, x,
        anchor (see :func:`flatten_anchor_outputs`)."""
        return (flatten_anchor_outputs(class_outputs, self.num_classes),
                flatten_anchor_outputs(box_outputs, 4))


# -------------------------------------------------------------------------------------- network
def efficientdet_backbone_options(config: EfficientDetConfig, options: Optional[Dict[str, Any]]
                                  ) -> Dict[str, Any]:
    """The backbone's options: the table's arch and the TF ports' settings unless given."""
    if options is not None and not isinstance(options, dict):
        raise TypeError(f'backbone_options must be a dict of EfficientNet options, got '
                        f'{type(options).__name__}')
    options = dict(options or {})
    options.setdefault('arch', config.backbone)
    options.setdefault('drop_path_rate', config.drop_path_rate)
    if options.get('pretrained') in (None, False) and 'init_cfg' not in options:
        # effdet's tf_ backbones; with weights, the builder takes these from the weights instead
        options.setdefault('padding', 'same')
        options.setdefault('norm_eps', 1e-3)
    return options


class EfficientDetNet(nn.Module):
    """EfficientDet: our EfficientNet + BiFPN (:class:`EffNetBiFPN`, as ``self.backbone``) and the
    class/box nets (:class:`EfficientDetHeadNets`, as ``self.head``).

    ``forward(images)`` returns (class outputs, box outputs), one (N, A * K, H, W) and one
    (N, A * 4, H, W) tensor per level P3 ... P7; sides of ``images`` should be multiples of
    :attr:`size_divisor` (the caller pads).

    Args:
        config: the variant, e.g. ``EFFICIENTDET_CONFIGS['d0']``.
        num_classes: classes of the class net (effdet's COCO models: 90).
        backbone_options: :class:`~effnet_backbones.EfficientNet` options (``pretrained``,
            ``with_cp``, ``memory_efficient``, ``frozen_stages`` ...; ``arch`` replaces the
            table's). Without weights the backbone gets TF 'same' padding and BN eps 1e-3.
        with_cp: checkpointing of BiFPN and heads: None follows the backbone's ``with_cp``
            ('stage' -> per cell, 'block' -> per node; heads per repeat), False, True / 'cell' /
            'node'.
        memory_efficient: fused BN + Swish in the heads; None follows the backbone's option.
        **neck_options: further :class:`EffNetBiFPN` options (norm_layer, act_layer, conv_bias).
    """

    def __init__(self, config: EfficientDetConfig, num_classes: int = 90,
                 backbone_options: Optional[Dict[str, Any]] = None,
                 with_cp: Union[None, bool, str] = None, memory_efficient: Optional[bool] = None,
                 **neck_options: Any) -> None:
        super().__init__()
        self.config = config
        self.backbone = EffNetBiFPN(efficientdet_backbone_options(config, backbone_options), width=config.width,
                                    repeats=config.repeats, fusion=config.fusion,
                                    min_level=config.min_level, max_level=config.max_level,
                                    with_cp=with_cp, **neck_options)
        if memory_efficient is None:
            memory_efficient = self.backbone.body.memory_efficient
        head_options = {key: neck_options[key] for key in
                        ('norm_layer', 'norm_eps', 'norm_momentum', 'act_layer', 'conv_bias')
                        if key in neck_options}
        self.head = EfficientDetHeadNets(config.width, num_classes, config.num_levels,
                                         config.head_repeats, config.num_anchors,
                                         padding=self.backbone.bifpn.padding,
                                         memory_efficient=memory_efficient,
                                         with_cp=self.backbone.bifpn.with_cp is not None,
                                         **head_options)
        self.num_classes = num_classes

    @property
    def size_divisor(self) -> int:
        """Input sides must be multiples of this (128 for P7)."""
        return self.backbone.size_divisor

    @property
    def strides(self) -> List[int]:
        """Stride of each output level (8 ... 128)."""
        return self.backbone.strides

    @property
    def num_anchors(self) -> int:
        """Anchors per location."""
        return self.config.num_anchors

    def set_with_cp(self, mode: Union[None, bool, str]) -> None:
        """Switch checkpointing of the BiFPN ('cell', 'node', or off) and the head repeats; the
        backbone keeps its own ``with_cp``."""
        self.backbone.bifpn.with_cp = mode
        self.head.with_cp = self.backbone.bifpn.with_cp is not None

    def forward(self, images: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """(class outputs, box outputs), one tensor per level, finest first."""
        return self.head(list(self.backbone(images).values()))


def create_efficientdet(name: str = 'd0', num_classes: int = 90,
                        backbone_options: Optional[Dict[str, Any]] = None,
                        with_cp: Union[None, bool, str] = None,
                        memory_efficient: Optional[bool] = None,
                        **overrides: Any) -> EfficientDetNet:
    """EfficientDet by name: ``create_efficientdet('d3', num_classes=20)``.

    Args:
        name: 'd0' ... 'd7', 'efficientdet_d0' ... or effdet's 'tf_efficientdet_d0' ...
        num_classes: classes of the class net.
        backbone_options: options of the EfficientNet backbone (see :class:`EfficientDetNet`).
        with_cp, memory_efficient: as for :class:`EfficientDetNet`.
        **overrides: fields of :class:`EfficientDetConfig` to change (``width=96``,
            ``fusion='softmax'``, ``repeats=2`` ...).
    """
    config = EFFICIENTDET_CONFIGS[efficientdet_key(name)]
    fields = {field.name for field in dataclasses.fields(EfficientDetConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f'create_efficientdet got unknown overrides {unknown}; valid: '
                        f'{", ".join(sorted(fields))}')
    return EfficientDetNet(dataclasses.replace(config, **overrides), num_classes,
                           backbone_options, with_cp=with_cp, memory_efficient=memory_efficient)
