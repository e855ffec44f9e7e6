"""RetinaNet, FCOS and Faster R-CNN (torchvision) on EfficientNet + FPN, as MMEngine models.

Configs name them ``effnet_backbones.RetinaNet``, ``effnet_backbones.FCOS`` and
``effnet_backbones.FasterRCNN``::

    model = dict(type='effnet_backbones.RetinaNet',
                 backbone=dict(type='effnet_backbones.EfficientNet', arch='b3', scse=True),
                 num_classes=80)
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from effnet_backbones import EffNetFPN, EfficientNet

from .heads import (OCTAVE_SCALES, DetectorSpec, FasterRCNNSpec, FCOSSpec, RetinaNetSpec,
                    Thresholds)
from .sample import DetSample
from .sliced import predict_sliced, resolve_det_test_cfg

__all__ = ['TorchvisionDetector', 'RetinaNet', 'FCOS', 'FasterRCNN', 'EfficientDet',
           'BatchOnlyTransform']

DEFAULT_PREPROCESSOR = dict(type='effnet_backbones.DetDataPreprocessor')
Backbone = Union[EfficientNet, Dict[str, Any]]


class BatchOnlyTransform(GeneralizedRCNNTransform):
    """torchvision's batching (pad to a common size) without its resizing and normalising.

    The dataset already resized each image (recording how, to map predictions back to the
    original pixels) and normalised its intensities (which depends on the bit depth), so doing
    either again here would be wrong.
    """

    def __init__(self, size_divisible: int) -> None:
        super().__init__(min_size=1, max_size=1, image_mean=[0.0], image_std=[1.0],
                         size_divisible=size_divisible)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def resize(self, image: torch.Tensor, target: Optional[Dict[str, torch.Tensor]] = None):
        return image, target


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """torchvision detectors predict only in eval mode; restore the caller's mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class TorchvisionDetector(BaseModel):
    """A torchvision detector on :class:`~effnet_backbones.EffNetFPN`, as an MMEngine model.

    Images arrive resized by the dataset; batches of different sizes are padded to a multiple of
    the coarsest FPN stride. Predictions come back in each image's original pixels.

    Args:
        spec: what is specific to the detector (passed by the subclasses).
        backbone: an :class:`~effnet_backbones.EfficientNet` or its config, e.g.
            ``dict(type='effnet_backbones.EfficientNet', arch='b3', scse=True, frozen_stages=1,
            norm_eval=True, pretrained=True)``; ``out_indices`` defaults to (2, 3, 4).
        num_classes: object classes, background not counted.
        fpn: :class:`~effnet_backbones.EffNetFPN` options (``out_channels``, ``p6_from`` ...).
        score_thresh: detections scoring less are dropped.
        nms_thresh: IoU above which non-maximum suppression removes the lower-scored box.
        detections_per_img: most detections kept per image (COCO evaluation counts 100).
        detector_options: further keyword arguments of the torchvision detector
            (``fg_iou_thresh``, ``topk_candidates``, ``rpn_batch_size_per_image`` ...).
        test_cfg: how 'predict' mode predicts: ``dict(mode='whole')`` (default) the whole image
            at once; ``dict(mode='slide', window=128)`` overlapping windows of the training crop
            (network-input pixels), merged (``overlap`` 0.25, ``match_thresh``, ``edge_margin``,
            ``batch_size``: :func:`~tasks.detection.sliced.resolve_det_test_cfg`).
        data_preprocessor: batching config, see :class:`DetDataPreprocessor`.
    """

    def __init__(self, spec: DetectorSpec, /, backbone: Backbone, num_classes: int,
                 fpn: Optional[Dict[str, Any]] = None, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100,
                 detector_options: Optional[Dict[str, Any]] = None,
                 test_cfg: Optional[Dict[str, Any]] = None,
                 data_preprocessor: Optional[Dict[str, Any]] = None,
                 init_cfg: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor or DEFAULT_PREPROCESSOR,
                         init_cfg=init_cfg)
        self.test_cfg = resolve_det_test_cfg(test_cfg)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f'num_classes counts object classes without background (>= 1), '
                             f'got {num_classes!r}')
        for key in ('min_size', 'max_size', 'image_mean', 'image_std'):
            if key in (detector_options or {}):
                raise ValueError(f'detector_options.{key}: resizing and normalising are the '
                                 f"dataset's job here (img_size, normalize), not the detector's")
        self.num_classes = num_classes
        self.label_offset = spec.label_offset
        neck = self.build_neck(backbone, spec, dict(fpn or {}))
        self.thresholds = thresholds = Thresholds(score_thresh, nms_thresh, detections_per_img)
        self.detector = spec.build(neck, num_classes, thresholds, dict(detector_options or {}))
        self.detector.transform = BatchOnlyTransform(size_divisible=max(neck.strides))

    def build_neck(self, backbone: Backbone, spec: DetectorSpec, fpn: Dict[str, Any]) -> nn.Module:
        """Backbone + FPN (``out_channels`` and ``strides`` of its levels); subclasses may build
        another."""
        return EffNetFPN(backbone, **{'p6_from': spec.p6_from, **fpn})

    @property
    def fpn(self) -> EffNetFPN:
        """The backbone + FPN the detector runs on."""
        return self.detector.backbone

    def forward(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
                data_samples: Optional[List[DetSample]] = None,
                mode: str = 'tensor') -> Union[Dict[str, torch.Tensor], List[DetSample]]:
        """MMEngine entry point: 'loss' -> dict of losses, 'predict' -> samples with ``pred_*``,
        'tensor' -> the FPN levels of the padded batch."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            images, _ = self.detector.transform(list(inputs))
            return self.fpn(images.tensors)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def _target(self, sample: DetSample) -> Dict[str, torch.Tensor]:
        if sample.gt_boxes is None or sample.gt_labels is None:
            raise ValueError(f'training needs boxes and labels; none for {sample.img_path}')
        labels = sample.gt_labels.long()
        if labels.numel() and int(labels.max()) >= self.num_classes:
            raise ValueError(f'{sample.img_path} has label {int(labels.max())} but model.'
                             f'num_classes is {self.num_classes}; make num_classes match the '
                             f"dataset's classes")
        return dict(boxes=sample.gt_boxes.float().reshape(-1, 4), labels=labels + self.label_offset)

    def loss(self, inputs: Sequence[torch.Tensor],
             data_samples: List[DetSample]) -> Dict[str, torch.Tensor]:
        """The detector's losses, each named ``loss_*`` so MMEngine sums and logs them."""
        if not self.training:
            raise RuntimeError("mode='loss' needs model.train(): torchvision detectors compute "
                               'losses only in training mode')
        losses = self.detector(list(inputs), [self._target(sample) for sample in data_samples])
        return {name if 'loss' in name else f'loss_{name}': value for name, value in losses.items()}

    @torch.no_grad()
    def predict(self, inputs: Sequence[torch.Tensor],
                data_samples: Optional[List[DetSample]] = None) -> List[DetSample]:
        """Samples with ``pred_boxes`` (original pixels), ``pred_scores`` and ``pred_labels``;
        whole images or windows merged, as ``test_cfg`` says."""
        images = list(inputs)
        with _eval_mode(self.detector):
            if self.test_cfg['mode'] == 'slide':
                outputs = [predict_sliced(self.detector, image, self.test_cfg,
                                          self.thresholds.nms_thresh,
                                          self.thresholds.detections_per_img)
                           for image in images]
            else:
                outputs = self.detector(images)
        if data_samples is None:
            data_samples = [DetSample(img_path='', img_id=index, ori_shape=tuple(image.shape[-2:]),
                                      img_shape=tuple(image.shape[-2:]))
                            for index, image in enumerate(images)]
        return [self._to_original(sample, output) for sample, output in zip(data_samples, outputs)]

    def _to_original(self, sample: DetSample, output: Dict[str, torch.Tensor]) -> DetSample:
        height, width = sample.ori_shape
        boxes = sample.mapping.to_original(output['boxes'])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        return replace(sample, pred_boxes=boxes, pred_scores=output['scores'],
                       pred_labels=output['labels'] - self.label_offset)


class RetinaNet(TorchvisionDetector):
    """RetinaNet (focal loss, anchors) on EfficientNet + FPN P3-P7.

    Args:
        anchor_sizes: base anchor size per level P3..P7 (pixels of the network input).
        anchor_scales: multipliers of the base size (default: 3 per octave, as in the paper).
        aspect_ratios: height / width ratios of the anchors.
        head_norm: 'gn' (GroupNorm, torchvision's v2 head; good for small batches) or None.
        bbox_loss: 'giou' (v2), 'l1' (v1), 'smooth_l1', 'ciou' or 'diou'.
        **kwargs: :class:`TorchvisionDetector` arguments (``backbone``, ``num_classes`` ...).
    """

    def __init__(self, anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512),
                 anchor_scales: Sequence[float] = OCTAVE_SCALES,
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), head_norm: Optional[str] = 'gn',
                 bbox_loss: str = 'giou', **kwargs: Any) -> None:
        super().__init__(RetinaNetSpec(tuple(anchor_sizes), tuple(anchor_scales),
                                       tuple(aspect_ratios), head_norm, bbox_loss), **kwargs)


class FCOS(TorchvisionDetector):
    """FCOS (anchor-free) on EfficientNet + FPN P3-P7 (P6 from P5, as in the FCOS paper).

    Args:
        center_sampling_radius: positives lie within this many strides of an object's centre.
        **kwargs: :class:`TorchvisionDetector` arguments.
    """

    def __init__(self, center_sampling_radius: float = 1.5, **kwargs: Any) -> None:
        super().__init__(FCOSSpec(center_sampling_radius), **kwargs)


class FasterRCNN(TorchvisionDetector):
    """Faster R-CNN (RPN + RoIAlign box head) on EfficientNet + FPN.

    Args:
        anchor_sizes: RPN base anchor size per level P3..P7.
        anchor_scales: multipliers of the base size.
        aspect_ratios: height / width ratios of the anchors.
        roi_levels: FPN levels the box head pools from.
        **kwargs: :class:`TorchvisionDetector` arguments.
    """

    def __init__(self, anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512),
                 anchor_scales: Sequence[float] = (1.0,),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
                 roi_levels: Sequence[str] = ('p3', 'p4', 'p5'), **kwargs: Any) -> None:
        super().__init__(FasterRCNNSpec(tuple(anchor_sizes), tuple(anchor_scales),
                                        tuple(aspect_ratios), tuple(roi_levels)), **kwargs)


class EfficientDet(TorchvisionDetector):
    """EfficientDet D0-D7 (BiFPN + shared class/box nets, effdet's anchors and focal + Huber loss)
    on our EfficientNet, any input size (padded to 128 inside).

    Args:
        variant: 'd0' ... 'd7' (the compound table, :data:`effnet_backbones.EFFICIENTDET_CONFIGS`).
        backbone: :class:`~effnet_backbones.EfficientNet` options replacing the table's
            (``in_chans``, ``pretrained``, ``drop_path_rate``, ``memory_efficient``, ``with_cp``
            ...); without weights the backbone uses TF 'same' padding and BN eps 1e-3 as effdet.
        bifpn: fields of the variant to change: ``width``, ``repeats``, ``head_repeats``,
            ``fusion`` ('fast', 'softmax', 'sum'), ``anchor_scale``.
        loss: effdet's loss settings to change (``focal_alpha``, ``focal_gamma``,
            ``huber_delta``, ``box_loss_weight``).
        with_cp: checkpointing of the BiFPN ('cell' / 'node') and the head repeats; None
            follows the backbone's ``with_cp``.
        norm_layer: the norm of the BiFPN and the head nets: 'bn' (effdet's BatchNorm, eps 1e-3,
            momentum 0.01), or a name / dict of :func:`~effnet_backbones.layers.
            resolve_norm_layer` such as ``'gn'`` (GroupNorm, 8 groups) or ``dict(type='GN',
            num_groups=16)``. GroupNorm normalises each image by itself, so training batches of
            two crops and evaluation on other images see the same normalisation
            (docs/detection.md section 9); the backbone keeps its BatchNorm.
        **kwargs: :class:`TorchvisionDetector` arguments (``num_classes``, ``score_thresh`` ...).
    """

    def __init__(self, variant: str = 'd0', backbone: Optional[Dict[str, Any]] = None,
                 bifpn: Optional[Dict[str, Any]] = None, loss: Optional[Dict[str, float]] = None,
                 with_cp: Union[None, bool, str] = None,
                 norm_layer: Union[str, Dict[str, Any]] = 'bn', **kwargs: Any) -> None:
        import dataclasses

        from effnet_backbones.efficientdet import efficientdet_config, efficientdet_key

        from .efficientdet import EfficientDetSpec

        config = efficientdet_config(variant)
        changes = dict(bifpn or {})
        valid = ('width', 'repeats', 'head_repeats', 'fusion', 'anchor_scale')
        unknown = sorted(set(changes) - set(valid))
        if unknown:
            raise ValueError(f'bifpn: unknown key {unknown[0]!r}; valid: {list(valid)}')
        config = dataclasses.replace(config, **changes)
        if 'fpn' in kwargs:
            raise ValueError("EfficientDet has no 'fpn' options; set its BiFPN with "
                             "bifpn=dict(width=..., repeats=..., fusion=...)")
        options = dict(backbone or {})
        options.pop('type', None)
        memory_efficient = bool(options.get('memory_efficient', False))
        from effnet_backbones.layers import resolve_norm_layer
        resolve_norm_layer(norm_layer)  # an unknown name or option fails here, named
        object.__setattr__(self, '_effdet', dict(config=config, with_cp=with_cp))
        spec = EfficientDetSpec(config, dict(loss or {}), memory_efficient,
                                self._head_with_cp(with_cp, options), norm_layer)
        super().__init__(spec, backbone=options, **kwargs)
        self.variant = efficientdet_key(variant)

    @staticmethod
    def _head_with_cp(with_cp: Union[None, bool, str], backbone: Dict[str, Any]) -> bool:
        if with_cp is None:
            return bool(backbone.get('with_cp'))
        return with_cp is not False

    def build_neck(self, backbone: Backbone, spec: DetectorSpec, fpn: Dict[str, Any]) -> nn.Module:
        """:class:`~effnet_backbones.EffNetBiFPN` of the variant on the backbone."""
        from effnet_backbones import EffNetBiFPN
        from effnet_backbones.efficientdet import efficientdet_backbone_options

        config, with_cp = self._effdet['config'], self._effdet['with_cp']
        return EffNetBiFPN(efficientdet_backbone_options(config, dict(backbone)), width=config.width,
                           repeats=config.repeats, fusion=config.fusion,
                           min_level=config.min_level, max_level=config.max_level,
                           norm_layer=spec.norm_layer, with_cp=with_cp)

    def export_network(self) -> nn.Module:
        """The network part (BiFPN + heads, padding inside) for ``tools/export.py``; anchors,
        decoding and NMS are left outside (:class:`~tasks.detection.efficientdet.
        EfficientDetExport`)."""
        from .efficientdet import EfficientDetExport
        return EfficientDetExport(self.detector.backbone, self.detector.head).eval()
