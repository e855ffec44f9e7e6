"""The peers of the task benchmark run inside our task models with their own networks."""
import pytest
import torch
import torch.nn as nn

from benchmarks.peers import PeerRetinaNet, PeerSegmentationModel, build_peer_network


def test_smp_peer_unet_is_smps_own_encoder_in_our_model():
    model = PeerSegmentationModel(network=dict(library='smp', encoder_name='resnet18'),
                                  in_channels=1, num_classes=3)
    assert type(model.net).__name__ == 'Unet' and 'ResNet' in type(model.net.encoder).__name__
    # odd sizes work: our model pads to the peer's divisor and crops back
    assert model.logits(torch.randn(1, 1, 67, 90)).shape == (1, 3, 67, 90)


def test_monai_peer_is_flexible_unet():
    pytest.importorskip('monai')
    net = build_peer_network(dict(library='monai', backbone='efficientnet-b0'), 1, 2)
    assert type(net).__name__ == 'FlexibleUNet'
    assert net(torch.randn(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_unknown_peer_library_is_named():
    with pytest.raises(ValueError, match="'timm'"):
        build_peer_network(dict(library='timm'), 3, 2)


@pytest.mark.parametrize('width', [64, 256])
def test_resnet_fpn_peer_follows_the_recipes_fpn_and_trains_its_norms(width):
    model = PeerRetinaNet(network=dict(depth='resnet50'), num_classes=2, fpn=dict(out_channels=width),
                          backbone=dict(type='effnet_backbones.EfficientNet', in_chans=1))
    levels = model.fpn(torch.randn(1, 1, 128, 128))
    assert [tuple(v.shape[1:]) for v in levels.values()] == \
        [(width, 128 // s, 128 // s) for s in (8, 16, 32, 64, 128)]
    norms = [m for m in model.fpn.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 53 and all(m.weight.requires_grad for m in norms)
