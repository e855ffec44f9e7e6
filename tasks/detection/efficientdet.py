"""EfficientDet D0-D7 as a torchvision RetinaNet-style detector: our BiFPN network
(:func:`effnet_backbones.create_efficientdet`'s neck and heads) with effdet's anchors and loss.

- Anchors (:class:`EffDetAnchorGenerator`): effdet's, centred on each cell
  (``(i + 0.5) * stride``), sides ``anchor_scale * stride * 2 ** (octave / num_scales)`` times
  each aspect's (width, height) multipliers, ordered octave-major per location.
- Loss (:class:`EfficientDetHead`): sigmoid focal loss (alpha 0.25, gamma 1.5) on every anchor
  that is not ignored and Huber loss (delta 0.1) on the positives' box offsets (offsets that are
  exactly 0 skipped, as the reference does), weighted 50, both normalised by the batch's
  positives + 1, as effdet does. Anchors match a box at IoU >= 0.5
  and are background below (no ignored band; each box keeps its best anchor).
- Any input size: the batch is padded (bottom, right) to a multiple of 128 inside the model and
  predictions are mapped back to each image's pixels (:class:`~tasks.detection.model.
  TorchvisionDetector`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import detection as tvdet
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import sigmoid_focal_loss

from effnet_backbones import EfficientDetHeadNets
from effnet_backbones.efficientdet import EFFICIENTDET_CONFIGS, EfficientDetConfig

from .heads import DetectorSpec, Thresholds

__all__ = ['EffDetAnchorGenerator', 'EfficientDetHead', 'EfficientDetSpec', 'EfficientDetExport',
           'EFFDET_LOSS']

#: effdet's training loss settings
EFFDET_LOSS = dict(focal_alpha=0.25, focal_gamma=1.5, huber_delta=0.1, box_loss_weight=50.0)


class EffDetAnchorGenerator(AnchorGenerator):
    """effdet's anchors, in torchvision's ``AnchorGenerator`` interface (one ``(sum HWA, 4)``
    tensor of ``x1, y1, x2, y2`` per image, levels finest first, then y, x, then anchor).

    Args:
        strides: stride of each level (8 ... 128).
        anchor_scale: base side in strides (4; D7: 5).
        num_scales: scales per octave (3: 2 ** (0, 1/3, 2/3)).
        aspect_ratios: (width, height) multipliers, e.g. ((1, 1), (1.4, 0.7), (0.7, 1.4)).
    """

    def __init__(self, strides: Sequence[int], anchor_scale: float = 4.0, num_scales: int = 3,
                 aspect_ratios: Sequence[Tuple[float, float]] = ((1.0, 1.0), (1.4, 0.7),
                                                                 (0.7, 1.4))) -> None:
        super().__init__(sizes=((1.0,),) * len(strides), aspect_ratios=((1.0,),) * len(strides))
        self.strides = [int(s) for s in strides]
        # (width, height) of each anchor of a location: octave-major, then aspect, as effdet
        self.shapes = [[(anchor_scale * stride * 2 ** (octave / num_scales) * aspect_w,
                         anchor_scale * stride * 2 ** (octave / num_scales) * aspect_h)
                        for octave in range(num_scales) for aspect_w, aspect_h in aspect_ratios]
                       for stride in self.strides]
        self._cache: Dict[Tuple[Any, ...], torch.Tensor] = {}  # the last size's anchors

    def num_anchors_per_location(self) -> List[int]:
        """Anchors at each location of each level."""
        return [len(shapes) for shapes in self.shapes]

    def _level(self, stride: int, shapes: List[Tuple[float, float]], size: Tuple[int, int],
               device: torch.device) -> torch.Tensor:
        half = torch.tensor([[-w / 2, -h / 2, w / 2, h / 2] for w, h in shapes], device=device)
        ys = (torch.arange(size[0], device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(size[1], device=device, dtype=torch.float32) + 0.5) * stride
        y, x = torch.meshgrid(ys, xs, indexing='ij')
        centres = torch.stack([x, y, x, y], dim=-1).reshape(-1, 1, 4)
        return (centres + half.view(1, -1, 4)).reshape(-1, 4)

    def forward(self, image_list: Any, feature_maps: List[torch.Tensor]) -> List[torch.Tensor]:
        sizes = tuple(tuple(int(v) for v in f.shape[-2:]) for f in feature_maps)
        device = feature_maps[0].device
        key = (sizes, str(device))
        if key not in self._cache:
            self._cache = {key: torch.cat([self._level(stride, level, size, device) for
                                           stride, level, size in zip(self.strides, self.shapes,
                                                                      sizes)])}
        anchors = self._cache[key].to(feature_maps[0].dtype)
        return [anchors for _ in range(len(image_list.image_sizes))]


class EfficientDetHead(nn.Module):
    """EfficientDet's class and box nets with effdet's loss, as a torchvision RetinaNet head.

    Args:
        nets: the class and box nets (:class:`~effnet_backbones.EfficientDetHeadNets`).
        focal_alpha, focal_gamma: focal loss settings.
        huber_delta: Huber loss threshold on the box offsets.
        box_loss_weight: weight of the box loss in the total.
    """

    def __init__(self, nets: EfficientDetHeadNets, focal_alpha: float = 0.25,
                 focal_gamma: float = 1.5, huber_delta: float = 0.1,
                 box_loss_weight: float = 50.0) -> None:
        super().__init__()
        self.nets = nets
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.huber_delta, self.box_loss_weight = huber_delta, box_loss_weight
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))

    def forward(self, features: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """torchvision's head outputs: ``cls_logits`` (N, sum HWA, K), ``bbox_regression``
        (N, sum HWA, 4)."""
        classes, boxes = self.nets.flatten(*self.nets(list(features)))
        return dict(cls_logits=classes, bbox_regression=boxes)

    def compute_loss(self, targets: List[Dict[str, torch.Tensor]],
                     head_outputs: Dict[str, torch.Tensor], anchors: List[torch.Tensor],
                     matched_idxs: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Focal classification and weighted Huber box losses over the batch, each divided by
        the batch's positives + 1 (the box loss also by 4 coordinates)."""
        class_losses, box_losses, positives = [], [], 0
        for target, logits, regression, anchors_i, matched in zip(
                targets, head_outputs['cls_logits'], head_outputs['bbox_regression'], anchors,
                matched_idxs):
            foreground = matched >= 0
            positives += int(foreground.sum())
            wanted = torch.zeros_like(logits)
            wanted[foreground, target['labels'][matched[foreground]]] = 1.0
            valid = matched != Matcher.BETWEEN_THRESHOLDS
            class_losses.append(sigmoid_focal_loss(logits[valid], wanted[valid], self.focal_alpha,
                                                   self.focal_gamma, reduction='sum'))
            offsets = self.box_coder.encode_single(target['boxes'][matched[foreground]],
                                                   anchors_i[foreground])
            # the reference skips offsets that are exactly 0 (a box centred on its anchor)
            box_losses.append((nn.functional.huber_loss(regression[foreground], offsets,
                                                        reduction='none', delta=self.huber_delta)
                               * (offsets != 0)).sum())
        normaliser = positives + 1.0
        return dict(classification=sum(class_losses) / normaliser,
                    bbox_regression=self.box_loss_weight * sum(box_losses) / (4 * normaliser))


@dataclass(frozen=True)
class EfficientDetSpec(DetectorSpec):
    """EfficientDet on :class:`~effnet_backbones.EffNetBiFPN`: heads, anchors, loss."""

    config: EfficientDetConfig = EFFICIENTDET_CONFIGS['d0']
    loss: Dict[str, float] = field(default_factory=lambda: dict(EFFDET_LOSS))
    memory_efficient: bool = False
    with_cp: bool = False
    #: the norm of the BiFPN and the head nets: a name or dict (resolve_norm_layer)
    norm_layer: Any = 'bn'

    def build(self, fpn: Any, num_classes: int, thresholds: Thresholds,
              options: Dict[str, Any]) -> nn.Module:
        config = self.config
        nets = EfficientDetHeadNets(fpn.out_channels, num_classes, config.num_levels,
                                    config.head_repeats, config.num_anchors,
                                    padding=fpn.bifpn.padding, norm_layer=self.norm_layer,
                                    memory_efficient=self.memory_efficient, with_cp=self.with_cp)
        unknown = sorted(set(self.loss) - set(EFFDET_LOSS))
        if unknown:
            raise ValueError(f'loss: unknown key {unknown[0]!r}; valid: {sorted(EFFDET_LOSS)}')
        head = EfficientDetHead(nets, **{**EFFDET_LOSS, **self.loss})
        anchors = EffDetAnchorGenerator(fpn.strides, config.anchor_scale, config.num_scales,
                                        config.aspect_ratios)
        options = {'fg_iou_thresh': 0.5, 'bg_iou_thresh': 0.5, **options}
        return tvdet.RetinaNet(fpn, num_classes, anchor_generator=anchors, head=head,
                               **vars(thresholds), **options)



class EfficientDetExport(nn.Module):
    """The network part of a trained EfficientDet, for export: pads any input to the BiFPN's
    multiple of 128 and returns the raw head outputs, ``cls_logits`` (N, sum HWA, K) and
    ``bbox_regression`` (N, sum HWA, 4) in torchvision's anchor order. Anchors
    (:class:`EffDetAnchorGenerator` on the padded size), box decoding and NMS stay outside, as
    for every torchvision detector.

    Written with ``(-side) % stride`` so exported graphs keep the input size symbolic.
    """

    def __init__(self, neck: nn.Module, head: EfficientDetHead) -> None:
        super().__init__()
        self.neck, self.head = neck, head
        self.size_divisor = neck.size_divisor

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        height, width = x.shape[-2:]
        padded = F.pad(x, [0, (-width) % self.size_divisor, 0, (-height) % self.size_divisor])
        outputs = self.head(list(self.neck(padded).values()))
        return outputs['cls_logits'], outputs['bbox_regression']
