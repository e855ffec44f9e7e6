"""The torchvision detectors on :class:`~effnet_backbones.EffNetFPN`: what differs per detector.

Each spec builds one torchvision detector from the FPN, the number of classes, the shared score
and NMS settings and any extra torchvision arguments. :class:`~tasks.detection.model.
TorchvisionDetector` does the rest (batching, losses, mapping predictions back) the same way for
all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, Sequence, Tuple

import torch.nn as nn
from torchvision.models import detection as tvdet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import MultiScaleRoIAlign

from effnet_backbones import EffNetFPN

__all__ = ['DetectorSpec', 'RetinaNetSpec', 'FCOSSpec', 'FasterRCNNSpec', 'Thresholds',
           'build_anchor_generator', 'check_group_norm_width', 'HEAD_NORMS', 'BOX_LOSSES',
           'OCTAVE_SCALES']

HEAD_NORMS = (None, 'gn')
GN_GROUPS = 32  # torchvision's RetinaNet v2 and FCOS heads
#: torchvision's box regression losses for RetinaNet (``_box_loss`` in torchvision's _utils).
BOX_LOSSES = ('l1', 'smooth_l1', 'giou', 'ciou', 'diou')
#: RetinaNet paper: three anchor scales per octave.
OCTAVE_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))


@dataclass(frozen=True)
class Thresholds:
    """Post-processing shared by every detector: score threshold, NMS IoU, detections per image."""

    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100


def build_anchor_generator(sizes: Sequence[float], scales: Sequence[float],
                           aspect_ratios: Sequence[float], num_levels: int) -> AnchorGenerator:
    """Anchors of ``size * scale`` for every scale and aspect ratio, one base size per FPN level."""
    if len(sizes) != num_levels:
        raise ValueError(f'anchor_sizes needs one base size per FPN level ({num_levels}: P3..P'
                         f'{2 + num_levels}), got {tuple(sizes)!r}')
    if not scales or not aspect_ratios or min(*scales, *aspect_ratios, *sizes) <= 0:
        raise ValueError(f'anchor sizes, scales and aspect ratios must be positive and non-empty, '
                         f'got {tuple(sizes)}, {tuple(scales)}, {tuple(aspect_ratios)}')
    return AnchorGenerator(sizes=tuple(tuple(float(size * scale) for scale in scales)
                                       for size in sizes),
                           aspect_ratios=(tuple(float(r) for r in aspect_ratios),) * num_levels)


def check_group_norm_width(channels: int, who: str) -> None:
    """torchvision's detection heads use GroupNorm(32, channels); with one channel per group, a
    single image whose P7 is 1 x 1 has one value per group, which GroupNorm refuses."""
    if channels % GN_GROUPS or channels < 2 * GN_GROUPS:
        raise ValueError(f'{who} uses GroupNorm with {GN_GROUPS} groups: the FPN\'s out_channels '
                         f'must be a multiple of {GN_GROUPS} and at least {2 * GN_GROUPS}, got '
                         f'{channels}')


class DetectorSpec:
    """How one torchvision detector is built on the FPN."""

    #: torchvision label of our label 0 (Faster R-CNN reserves 0 for background).
    label_offset = 0
    #: where P6 comes from when the config does not say (see effnet_backbones.adapters.torchvision)
    p6_from = 'c5'

    def build(self, fpn: EffNetFPN, num_classes: int, thresholds: Thresholds,
              options: Dict[str, Any]) -> nn.Module:
        """The torchvision detector; ``options`` are its own extra keyword arguments."""
        raise NotImplementedError


@dataclass(frozen=True)
class RetinaNetSpec(DetectorSpec):
    """RetinaNet; by default torchvision's v2 recipe: GroupNorm head, GIoU box loss, P6 from C5."""

    anchor_sizes: Tuple[float, ...] = (32, 64, 128, 256, 512)
    anchor_scales: Tuple[float, ...] = OCTAVE_SCALES
    aspect_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)
    head_norm: Any = 'gn'
    bbox_loss: str = 'giou'

    def build(self, fpn: EffNetFPN, num_classes: int, thresholds: Thresholds,
              options: Dict[str, Any]) -> nn.Module:
        if self.head_norm not in HEAD_NORMS:
            raise ValueError(f'head_norm must be one of {HEAD_NORMS}, got {self.head_norm!r}')
        if self.bbox_loss not in BOX_LOSSES:
            raise ValueError(f'bbox_loss must be one of {BOX_LOSSES}, got {self.bbox_loss!r}')
        anchors = build_anchor_generator(self.anchor_sizes, self.anchor_scales,
                                         self.aspect_ratios, len(fpn.strides))
        norm = partial(nn.GroupNorm, GN_GROUPS) if self.head_norm == 'gn' else None
        if norm is not None:
            check_group_norm_width(fpn.out_channels, "RetinaNet's head_norm='gn'")
        head = RetinaNetHead(fpn.out_channels, anchors.num_anchors_per_location()[0], num_classes,
                             norm_layer=norm)
        head.regression_head._loss_type = self.bbox_loss  # torchvision's v2 sets it the same way
        return tvdet.RetinaNet(fpn, num_classes, anchor_generator=anchors, head=head,
                               **vars(thresholds), **options)


@dataclass(frozen=True)
class FCOSSpec(DetectorSpec):
    """FCOS: anchor-free, one point per location; its 'anchor' sizes are the level strides,
    which FCOS uses to assign objects to levels, so they are not configurable."""

    center_sampling_radius: float = 1.5
    p6_from = 'p5'  # FCOS paper and torchvision's fcos_resnet50_fpn

    def build(self, fpn: EffNetFPN, num_classes: int, thresholds: Thresholds,
              options: Dict[str, Any]) -> nn.Module:
        check_group_norm_width(fpn.out_channels, "FCOS's head")
        anchors = AnchorGenerator(sizes=tuple((stride,) for stride in fpn.strides),
                                  aspect_ratios=((1.0,),) * len(fpn.strides))
        return tvdet.FCOS(fpn, num_classes, anchor_generator=anchors,
                          center_sampling_radius=self.center_sampling_radius, **vars(thresholds),
                          **options)


@dataclass(frozen=True)
class FasterRCNNSpec(DetectorSpec):
    """Faster R-CNN: RPN on every FPN level, RoIAlign on ``roi_levels``."""

    anchor_sizes: Tuple[float, ...] = (32, 64, 128, 256, 512)
    anchor_scales: Tuple[float, ...] = (1.0,)
    aspect_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)
    roi_levels: Tuple[str, ...] = ('p3', 'p4', 'p5')
    label_offset = 1
    p6_from = 'p5'

    def build(self, fpn: EffNetFPN, num_classes: int, thresholds: Thresholds,
              options: Dict[str, Any]) -> nn.Module:
        unknown = [name for name in self.roi_levels if name not in fpn.level_names]
        if unknown or not self.roi_levels:
            raise ValueError(f'roi_levels must name FPN levels among {fpn.level_names}, '
                             f'got {tuple(self.roi_levels)!r}')
        anchors = build_anchor_generator(self.anchor_sizes, self.anchor_scales,
                                         self.aspect_ratios, len(fpn.strides))
        pool = MultiScaleRoIAlign(featmap_names=list(self.roi_levels), output_size=7,
                                  sampling_ratio=2)
        return tvdet.FasterRCNN(
            fpn, num_classes + self.label_offset, rpn_anchor_generator=anchors, box_roi_pool=pool,
            box_score_thresh=thresholds.score_thresh, box_nms_thresh=thresholds.nms_thresh,
            box_detections_per_img=thresholds.detections_per_img, **options)
