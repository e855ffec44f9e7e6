"""torchvision detection adapter: the backbone's stride 8/16/32 taps as FPN levels P3-P7.

torchvision's RetinaNet, FCOS and Faster R-CNN take any ``backbone`` module that has an
``out_channels`` attribute and returns an ``OrderedDict`` of feature maps, finest first. Their own
``BackboneWithFPN`` finds the taps with ``IntermediateLayerGetter``, which needs the taps to be
named children; our backbone already returns its taps, so :class:`EffNetFPN` feeds them straight
into torchvision's ``FeaturePyramidNetwork`` and adds P6 and P7 with ``LastLevelP6P7``.

Where P6 comes from (``p6_from``):

- ``'c5'``: from the backbone's stride-32 tap, as in the RetinaNet paper (Lin et al. 2017) and
  torchvision's ``retinanet_resnet50_fpn_v2`` (``LastLevelP6P7(2048, 256)``). The default.
- ``'p5'``: from the FPN's P5, as in FCOS and torchvision's ``retinanet_resnet50_fpn`` (v1) and
  ``fcos_resnet50_fpn`` (``LastLevelP6P7(256, 256)``); a cheaper 256 -> 256 convolution.

``LastLevelP6P7(in, out)`` picks P5 only when ``in == out``, so the choice is made explicit here
rather than left to whether the stride-32 tap happens to have ``out_channels`` channels.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from ..backbone import EfficientNet
from ..factory import build_backbone, create_backbone
from ..features import FeatureInfo, TapInfo

__all__ = ['EffNetFPN', 'efficientnet_fpn_backbone', 'FPN_LEVELS', 'P6_SOURCES']

#: Backbone levels (0..4 = strides 2..32) that become P3, P4, P5.
FPN_LEVELS = (2, 3, 4)
P6_SOURCES = ('c5', 'p5')
LEVEL_NAMES = ('p3', 'p4', 'p5', 'p6', 'p7')
# torchvision's FeaturePyramidNetwork: P3-P5 leave its output convs, P6/P7 its LastLevelP6P7
_LEVEL_MODULES = {'p3': 'fpn.layer_blocks.0', 'p4': 'fpn.layer_blocks.1',
                  'p5': 'fpn.layer_blocks.2', 'p6': 'fpn.extra_blocks.p6',
                  'p7': 'fpn.extra_blocks.p7'}


def _pick_taps(backbone: EfficientNet) -> List[int]:
    """Positions, in the backbone's outputs, of its stride 8/16/32 taps."""
    if backbone.output_stride != 32:
        raise ValueError(f'an FPN needs an output stride of 32 (true strides 8/16/32), but the '
                         f'backbone has output_stride={backbone.output_stride}; leave it at 32')
    slots = {info.level: slot for slot, info in enumerate(backbone.feature_info)}
    missing = [level for level in FPN_LEVELS if level not in slots]
    if missing:
        raise ValueError(f'the backbone must return levels {FPN_LEVELS} (strides 8, 16, 32) for '
                         f'P3-P5, but its out_indices are {backbone.out_indices}; use '
                         f'out_indices=(2, 3, 4)')
    return [slots[level] for level in FPN_LEVELS]


class EffNetFPN(nn.Module):
    """EfficientNet + FPN for torchvision detectors: ``OrderedDict`` p3..p7 at strides 8..128.

    Example::

        fpn = EffNetFPN(dict(arch='b3', scse=True, frozen_stages=1, norm_eval=True))
        model = torchvision.models.detection.RetinaNet(fpn, num_classes=80)

    Args:
        backbone: an :class:`~effnet_backbones.EfficientNet` whose taps include levels 2, 3, 4
            (other taps are computed and ignored), or a dict of its options (``arch``, ``scse``,
            ``frozen_stages``, ``norm_eval``, ``pretrained`` ...; ``out_indices`` defaults to
            ``(2, 3, 4)``), or a registry config ``dict(type='effnet_backbones.EfficientNet',
            ...)``.
        out_channels: channels of every FPN level (torchvision reads ``self.out_channels``).
        p6_from: 'c5' (RetinaNet paper) or 'p5' (FCOS); see the module docstring.
        extra_levels: add P6 and P7 (RetinaNet, FCOS); ``False`` returns P3-P5 only.
        norm_layer: optional norm for the FPN convolutions (torchvision's ``norm_layer``), e.g.
            ``functools.partial(nn.GroupNorm, 32)``.
    """

    def __init__(self, backbone: Union[EfficientNet, Dict[str, Any], None] = None,
                 out_channels: int = 256, p6_from: str = 'c5', extra_levels: bool = True,
                 norm_layer: Optional[Any] = None) -> None:
        super().__init__()
        if p6_from not in P6_SOURCES:
            raise ValueError(f'p6_from must be one of {P6_SOURCES}, got {p6_from!r}')
        if not isinstance(out_channels, int) or isinstance(out_channels, bool) or out_channels < 1:
            raise ValueError(f'out_channels must be a positive int, got {out_channels!r}')
        self.body = _build_backbone(backbone)
        self._slots = _pick_taps(self.body)
        in_channels = [self.body.out_channels[slot] for slot in self._slots]
        extra = None
        if extra_levels:
            p6_in = in_channels[-1] if p6_from == 'c5' else out_channels
            extra = LastLevelP6P7(p6_in, out_channels)
            # LastLevelP6P7 infers its input from in == out; state it so a 256-channel C5 stays C5
            extra.use_P5 = p6_from == 'p5'
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra,
                                         norm_layer=norm_layer)
        self.out_channels = out_channels
        self.p6_from = p6_from
        self.level_names = LEVEL_NAMES if extra_levels else LEVEL_NAMES[:3]

    @property
    def strides(self) -> List[int]:
        """Stride of each returned level: 8, 16, 32 (, 64, 128)."""
        return [2 ** int(name[1]) for name in self.level_names]

    @property
    def feature_info(self) -> FeatureInfo:
        """One entry per returned level (``info['name']`` 'p3' ..., ``['stride']``,
        ``['channels']``, or timm's ``channels()`` / ``reduction()``)."""
        return FeatureInfo([
            TapInfo(level=int(name[1]), channels=self.out_channels, stride=2 ** int(name[1]),
                    module=_LEVEL_MODULES[name], name=name) for name in self.level_names])

    def forward(self, x: torch.Tensor) -> 'OrderedDict[str, torch.Tensor]':
        """``OrderedDict`` p3, p4, p5 (, p6, p7), finest first, each ``out_channels`` deep."""
        taps = self.body(x)
        levels = OrderedDict((name, taps[slot]) for name, slot in zip(LEVEL_NAMES, self._slots))
        return self.fpn(levels)


def _build_backbone(backbone: Union[EfficientNet, Dict[str, Any], None]) -> EfficientNet:
    if isinstance(backbone, EfficientNet):
        return backbone
    if backbone is None:
        backbone = {}
    if not isinstance(backbone, dict):
        raise TypeError(f'backbone must be an EfficientNet or a dict of its options, '
                        f'got {type(backbone).__name__}')
    options = dict(backbone)
    options.setdefault('out_indices', FPN_LEVELS)
    if 'type' in options:
        from ..registry import MODELS  # the registry imports this module

        built = MODELS.build(options)
        if not isinstance(built, EfficientNet):
            raise TypeError(f'backbone {backbone.get("type")!r} built a {type(built).__name__}; '
                            f'the FPN adapter needs an EfficientNet')
        return built
    return build_backbone(**options)


def efficientnet_fpn_backbone(name: str = 'efficientnet_b0', out_channels: int = 256,
                              p6_from: str = 'c5', extra_levels: bool = True,
                              **backbone_options: Any) -> EffNetFPN:
    """``EffNetFPN`` by name, like torchvision's ``resnet_fpn_backbone``.

    Example: ``efficientnet_fpn_backbone('efficientnet_b3', pretrained=True, frozen_stages=1,
    norm_eval=True, scse=True)``; ``backbone_options`` are :class:`EfficientNet` options.
    """
    backbone_options.setdefault('out_indices', FPN_LEVELS)
    return EffNetFPN(create_backbone(name, **backbone_options), out_channels=out_channels,
                     p6_from=p6_from, extra_levels=extra_levels)
