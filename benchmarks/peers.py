"""What users would pick instead, as models our training loop can run unchanged: smp's own encoders
and MONAI's ``FlexibleUNet`` inside :class:`~tasks.segmentation.SegmentationModel` (same losses,
padding, prediction and metrics), and torchvision's ResNet-50-FPN inside our
:class:`~tasks.detection.RetinaNet` (same head, anchors, losses), so a benchmark compares networks
and nothing else.

Configs reach them with ``custom_imports=dict(imports=[..., 'benchmarks.peers'])`` and
``model=dict(type='effnet_backbones.PeerSegmentationModel', network=dict(library='smp', ...))``.
They need the optional ``bench`` extra (MONAI); nothing here is installed with the library.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
import torch.nn as nn

from effnet_backbones.registry import MODELS
from tasks.detection.model import RetinaNet
from tasks.segmentation.model import SegmentationModel

__all__ = ['PeerSegmentationModel', 'build_peer_network', 'PEER_LIBRARIES', 'ResNetFPN',
           'PeerRetinaNet']

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
