"""What users would pick instead, as models our training loop can run unchanged: smp's own encoders
and MONAI's ``FlexibleUNet`` inside :class:`~tasks.segmentation.SegmentationModel` (same losses,
padding, prediction and metrics), and torchvision's ResNet-50-FPN inside our
:class:`~tasks.detection.RetinaNet` (same head, anchors, losses), so a benchmark compares networks
and nothing else. ``effdet``'s EfficientDet (:class:`PeerEffDet`) is the exception: it keeps its
own anchors, loss and post-processing, because the point is to compare with effdet as it is.

Configs reach them with ``custom_imports=dict(imports=[..., 'benchmarks.peers'])`` and
``model=dict(type='effnet_backbones.PeerSegmentationModel', network=dict(library='smp', ...))``.
They need the optional ``bench`` extra (MONAI); nothing here is installed with the library.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel

from effnet_backbones.registry import MODELS
from tasks.detection.model import RetinaNet
from tasks.segmentation.model import SegmentationModel

__all__ = ['PeerSegmentationModel', 'build_peer_network', 'PEER_LIBRARIES', 'ResNetFPN',
           'PeerRetinaNet', 'PeerEffDet']

PEER_LIBRARIES = ('smp', 'monai')


def build_peer_network(network: Dict[str, Any], in_channels: int, out_channels: int) -> nn.Module:
    """A peer segmentation network, randomly initialised (nothing is downloaded).

    Args:
        network: ``library='smp'`` with smp's ``arch`` (default 'Unet') and ``encoder_name``
            and any other smp argument, or ``library='monai'`` with ``FlexibleUNet``'s
            ``backbone`` and other arguments.
    """
    spec = dict(network)
    library = spec.pop('library', None)
    if library == 'smp':
        import segmentation_models_pytorch as smp
        return smp.create_model(arch=spec.pop('arch', 'Unet'), encoder_weights=None,
                                in_channels=in_channels, classes=out_channels, **spec)
    if library == 'monai':
        try:
            from monai.networks.nets import FlexibleUNet
        except ImportError as err:
            raise ImportError("MONAI peers need MONAI: pip install -e '.[bench]'") from err
        return FlexibleUNet(in_channels=in_channels, out_channels=out_channels,
                            backbone=spec.pop('backbone'), pretrained=False,
                            spatial_dims=spec.pop('spatial_dims', 2), **spec)
    raise ValueError(f'network.library must be one of {PEER_LIBRARIES}, got {library!r} '
                     f'(network={network!r})')


@MODELS.register_module()
class PeerSegmentationModel(SegmentationModel):
    """:class:`SegmentationModel` with a peer library's network in place of ours.

    Args:
        network: see :func:`build_peer_network`.
        size_divisor: the peer's output stride (inputs are padded to a multiple of it).
        **kwargs: every other :class:`SegmentationModel` argument (losses, classes ...).
    """

    def __init__(self, network: Dict[str, Any], size_divisor: int = 32, **kwargs: Any) -> None:
        # read by build_network during the parent's constructor, before nn.Module is set up
        object.__setattr__(self, '_network_spec', dict(network))
        object.__setattr__(self, '_size_divisor', int(size_divisor))
        super().__init__(**kwargs)

    def build_network(self, decoder: str, arch: str, in_channels: int, out_channels: int,
                      encoder_options: Dict[str, Any], decoder_options: Dict[str, Any]) -> nn.Module:
        """The peer network (``decoder``, ``arch`` and the option dicts are ours and unused)."""
        return build_peer_network(self._network_spec, in_channels, out_channels)

    @property
    def size_divisor(self) -> int:
        """Input sides are padded to multiples of this."""
        return self._size_divisor


class ResNetFPN(nn.Module):
    """torchvision's ResNet + FPN with P6/P7 from C5 (``retinanet_resnet50_fpn_v2``'s neck),
    randomly initialised, described like :class:`~effnet_backbones.EffNetFPN`.

    Args:
        depth: 'resnet18' ... 'resnet152'.
        in_chans: image channels (the stem is rebuilt for other than 3).
        out_channels: FPN width.
    """

    strides: List[int] = [8, 16, 32, 64, 128]

    def __init__(self, depth: str = 'resnet50', in_chans: int = 3, out_channels: int = 256) -> None:
        super().__init__()
        import torchvision
        from torchvision.models.detection.backbone_utils import BackboneWithFPN
        from torchvision.ops.feature_pyramid_network import LastLevelP6P7
        # trainable BN from scratch, as torchvision's retinanet_resnet50_fpn_v2 without weights
        # (resnet_fpn_backbone's default FrozenBatchNorm2d would be a fixed identity here)
        resnet = getattr(torchvision.models, depth)(weights=None, norm_layer=nn.BatchNorm2d)
        if in_chans != 3:
            old = resnet.conv1
            resnet.conv1 = nn.Conv2d(in_chans, old.out_channels, old.kernel_size, old.stride,
                                     old.padding, bias=False)
        c3 = 128 if depth in ('resnet18', 'resnet34') else 512
        self.body = BackboneWithFPN(
            resnet, return_layers={'layer2': '0', 'layer3': '1', 'layer4': '2'},
            in_channels_list=[c3, 2 * c3, 4 * c3], out_channels=out_channels,
            extra_blocks=LastLevelP6P7(4 * c3, out_channels))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.body(x)


@MODELS.register_module()
class PeerRetinaNet(RetinaNet):
    """:class:`~tasks.detection.RetinaNet` on torchvision's ResNet-FPN instead of ours.

    Args:
        network: ``dict(depth='resnet50')``; ``in_chans`` and the FPN width follow ``backbone``
            and ``fpn`` as for ours.
        **kwargs: every :class:`RetinaNet` argument.
    """

    def __init__(self, network: Dict[str, Any], **kwargs: Any) -> None:
        object.__setattr__(self, '_network_spec', dict(network))
        super().__init__(**kwargs)

    def build_neck(self, backbone: Any, spec: Any, fpn: Dict[str, Any]) -> nn.Module:
        """A :class:`ResNetFPN`; of ``backbone`` only ``in_chans`` is read."""
        in_chans = (backbone.get('in_chans') if isinstance(backbone, dict) else None) or 3
        return ResNetFPN(self._network_spec.get('depth', 'resnet50'), in_chans,
                         fpn.get('out_channels', 256))


@MODELS.register_module()
class PeerEffDet(BaseModel):
    """``effdet``'s EfficientDet (``tf_efficientdet_d0`` ...) from scratch, with effdet's own anchors,
    anchor labeller, focal + Huber loss and post-processing, fed our datasets' batches.

    effdet builds its network (the BiFPN's resampling sizes) and anchors for one fixed input size,
    a multiple of 128; here every batch is padded (bottom and right) to ``image_size``, which is
    what a user of effdet has to do with images of other sizes.

    Args:
        name: an effdet model name.
        image_size: the fixed input side (int) or (height, width); default effdet's (512 for D0).
        num_classes: object classes (background not counted).
        backbone: only ``in_chans`` is read (the recipes' backbone dict), for gray images.
        bifpn: only ``anchor_scale`` is read (an EfficientDet recipe's), so both detectors use
            the same anchors.
        score_thresh: detections scoring less are dropped.
        nms_thresh: effdet's NMS IoU is fixed at 0.5; another value is an error.
        detections_per_img: most detections kept per image.
        variant, loss: an EfficientDet recipe's keys; effdet's model ``name`` and its own loss
            are used instead.
        norm_layer: the norm of effdet's BiFPN and head nets, as our EfficientDet's (an
            EfficientDet recipe's key): 'bn' keeps effdet's BatchNorm; another name or dict of
            :func:`~effnet_backbones.layers.resolve_norm_layer` (``'gn'``) goes into effdet's
            own ``config.norm_layer``, so both detectors normalise alike.
        test_cfg: prediction as our detectors' (``dict(mode='slide', window=128)``: windows of
            the training crop, each padded to ``image_size``, merged by
            :func:`~tasks.detection.sliced.predict_sliced`); default the whole image.
    """

    def __init__(self, name: str = 'tf_efficientdet_d0', num_classes: Optional[int] = None,
                 image_size: Any = None,
                 backbone: Optional[Dict[str, Any]] = None,
                 bifpn: Optional[Dict[str, Any]] = None, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100,
                 variant: Optional[str] = None, loss: Optional[Dict[str, Any]] = None,
                 norm_layer: Any = 'bn', test_cfg: Optional[Dict[str, Any]] = None,
                 data_preprocessor: Optional[Dict[str, Any]] = None,
                 init_cfg: Optional[Dict[str, Any]] = None) -> None:
        if nms_thresh != 0.5:
            raise ValueError(f'effdet runs NMS at IoU 0.5; nms_thresh={nms_thresh} cannot be set')
        from tasks.detection.sliced import resolve_det_test_cfg
        resolved_test_cfg = resolve_det_test_cfg(test_cfg)  # a bad key fails before the build
        super().__init__(data_preprocessor=data_preprocessor or
                         dict(type='effnet_backbones.DetDataPreprocessor'), init_cfg=init_cfg)
        try:
            from effdet import EfficientDet, get_efficientdet_config
            from effdet.loss import DetectionLoss
        except ImportError as err:
            raise ImportError("the effdet peer needs effdet: pip install -e '.[dev]'") from err
        from omegaconf import OmegaConf
        config = get_efficientdet_config(name)
        OmegaConf.set_readonly(config, False)  # effdet's configs are read-only
        config.num_classes = int(num_classes)
        in_chans = (backbone or {}).get('in_chans') or 3
        config.backbone_args = dict(config.backbone_args or {}, in_chans=in_chans)
        config.max_det_per_image = detections_per_img
        if image_size is not None:
            config.image_size = ((image_size, image_size) if isinstance(image_size, int)
                                 else tuple(image_size))
        if any(side % 128 for side in config.image_size):
            raise ValueError(f'effdet needs image_size multiples of 128, got {config.image_size}')
        if (bifpn or {}).get('anchor_scale') is not None:
            config.anchor_scale = float(bifpn['anchor_scale'])
        if norm_layer != 'bn':  # effdet's default is its BatchNorm (eps 1e-3, momentum 0.01)
            from effnet_backbones.layers import resolve_norm_layer
            config._set_flag('allow_objects', True)  # OmegaConf holds no callables otherwise
            config.norm_layer = resolve_norm_layer(norm_layer)
            config.norm_kwargs = None  # BatchNorm's eps and momentum, which other norms refuse
        self.effdet_config = config
        self.test_cfg = resolved_test_cfg
        self.net = EfficientDet(config, pretrained_backbone=False)
        self.loss_fn = DetectionLoss(config)
        self.score_thresh = score_thresh
        self._anchors: Dict[Tuple[int, int], Any] = {}

    def _pad(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        size = tuple(self.effdet_config.image_size)
        too_large = [tuple(image.shape[-2:]) for image in images
                     if image.shape[-2] > size[0] or image.shape[-1] > size[1]]
        if too_large:
            raise ValueError(f'PeerEffDet: an image of {too_large[0]} exceeds effdet\'s fixed '
                             f'input {size}; set model.image_size')
        return torch.stack([F.pad(image, (0, size[1] - image.shape[-1],
                                          0, size[0] - image.shape[-2])) for image in images])

    def _labeller(self, size: Tuple[int, int], device: torch.device):
        """effdet's anchors and anchor labeller for a padded input size (built once per size)."""
        if size not in self._anchors:
            from effdet.anchors import AnchorLabeler, Anchors
            from omegaconf import OmegaConf
            config = copy.deepcopy(self.effdet_config)
            OmegaConf.set_readonly(config, False)  # effdet's configs are read-only
            config.image_size = size
            anchors = Anchors.from_config(config).to(device)
            self._anchors[size] = (anchors, AnchorLabeler(anchors, config.num_classes,
                                                          match_threshold=0.5))
        return self._anchors[size]

    def forward(self, inputs: Sequence[torch.Tensor], data_samples: Optional[List[Any]] = None,
                mode: str = 'tensor') -> Any:
        """MMEngine entry point: 'loss', 'predict' or 'tensor' (effdet's class and box outputs)."""
        if mode == 'predict' and self.test_cfg['mode'] == 'slide':
            return self.predict_sliced(list(inputs), data_samples)
        batch = self._pad(list(inputs))
        if mode == 'tensor':
            return self.net(batch)
        if mode == 'loss':
            return self.loss(batch, data_samples)
        if mode == 'predict':
            return self.predict(batch, data_samples)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, batch: torch.Tensor, data_samples: List[Any]) -> Dict[str, torch.Tensor]:
        """effdet's total loss (focal + box weight x Huber), logged as ``loss``."""
        _, labeller = self._labeller(tuple(batch.shape[-2:]), batch.device)
        boxes = [sample.gt_boxes.float().reshape(-1, 4)[:, [1, 0, 3, 2]].to(batch.device)
                 for sample in data_samples]  # effdet takes y1, x1, y2, x2
        classes = [sample.gt_labels.float().to(batch.device) + 1 for sample in data_samples]
        class_out, box_out = self.net(batch)
        cls_targets, box_targets, positives = labeller.batch_label_anchors(boxes, classes)
        loss, _, _ = self.loss_fn(class_out, box_out, cls_targets, box_targets, positives)
        return dict(loss=loss)

    def _detections(self, batch: torch.Tensor) -> List[torch.Tensor]:
        """Per image of a padded batch, effdet's post-processed detections scoring above
        ``score_thresh``: rows of x1, y1, x2, y2 (input pixels), score, effdet class (1-based)."""
        from effdet.bench import _batch_detection, _post_process
        anchors, _ = self._labeller(tuple(batch.shape[-2:]), batch.device)
        class_out, box_out = self.net(batch)
        config = self.effdet_config
        class_pp, box_pp, indices, classes = _post_process(
            class_out, box_out, num_levels=config.num_levels, num_classes=config.num_classes,
            max_detection_points=config.max_detection_points)
        detections = _batch_detection(len(batch), class_pp, box_pp, anchors.boxes,
                                      indices, classes, max_det_per_image=config.max_det_per_image)
        return [found[found[:, 4] > self.score_thresh] for found in detections]

    @torch.no_grad()
    def predict_sliced(self, images: List[torch.Tensor], data_samples: List[Any]) -> List[Any]:
        """:meth:`predict` from windows of ``test_cfg['window']`` merged as our detectors do."""
        from tasks.detection.sliced import predict_sliced

        def detect(windows: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
            return [dict(boxes=found[:, :4], scores=found[:, 4], labels=found[:, 5].long())
                    for found in self._detections(self._pad(windows))]

        merged = [predict_sliced(detect, image, self.test_cfg, 0.5,
                                 self.effdet_config.max_det_per_image) for image in images]
        found = [torch.cat([m['boxes'], m['scores'][:, None], m['labels'][:, None].float()], 1)
                 for m in merged]
        return self._to_samples(found, data_samples)

    @torch.no_grad()
    def predict(self, batch: torch.Tensor, data_samples: List[Any]) -> List[Any]:
        """Samples with ``pred_*`` in original pixels, from effdet's own post-processing."""
        return self._to_samples(self._detections(batch), data_samples)

    def _to_samples(self, detections: Sequence[torch.Tensor], data_samples: List[Any]) -> List[Any]:
        """``data_samples`` with each image's detections (rows as :meth:`_detections`') as
        ``pred_*`` in original pixels and 0-based labels."""
        results = []
        for sample, found in zip(data_samples, detections):
            height, width = sample.ori_shape
            boxes = sample.mapping.to_original(found[:, :4])
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
            results.append(replace(sample, pred_boxes=boxes, pred_scores=found[:, 4],
                                   pred_labels=found[:, 5].long() - 1))
        return results
