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


def _effdet_peer(**kwargs):
    pytest.importorskip('effdet')
    from benchmarks.peers import PeerEffDet
    return PeerEffDet(num_classes=2, image_size=(128, 256), backbone=dict(in_chans=1), **kwargs)


def test_effdet_peer_takes_the_recipes_groupnorm_in_its_bifpn_and_heads():
    bn, gn = _effdet_peer(), _effdet_peer(norm_layer='gn')
    for name in ('fpn', 'class_net', 'box_net'):
        norms = [m for m in getattr(gn.net, name).modules()
                 if isinstance(m, (nn.GroupNorm, nn.modules.batchnorm._BatchNorm))]
        assert norms and all(isinstance(m, nn.GroupNorm) for m in norms), name
        assert any(isinstance(m, nn.BatchNorm2d) for m in getattr(bn.net, name).modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in gn.net.backbone.modules())  # kept there
    assert sum(p.numel() for p in gn.parameters()) == sum(p.numel() for p in bn.parameters())
    class_out, _ = gn(torch.randn(2, 1, 128, 256))
    assert [tuple(level.shape[-2:]) for level in class_out] == \
        [(128 // s, 256 // s) for s in (8, 16, 32, 64, 128)]


def test_effdet_peer_predicts_in_windows_merged_into_image_pixels():
    from tasks.common.windows import fitted_window, window_slices
    from tasks.detection import DetSample
    model = _effdet_peer(test_cfg=dict(mode='slide', window=128)).eval()
    padded = []

    def one_box_per_window(batch):  # effdet's rows: x1, y1, x2, y2, score, class (1-based)
        padded.append(tuple(batch.shape[-2:]))
        return [torch.tensor([[10., 20., 30., 40., 0.9, 2.]]) for _ in batch]

    model._detections = one_box_per_window
    image = torch.zeros(1, 128, 300)
    sample = DetSample('x.png', 0, ori_shape=(128, 300), img_shape=(128, 300))
    predicted, = model([image], [sample], mode='predict')
    slices = window_slices((128, 300), fitted_window((128, 300), (128, 128)), 0.25)
    expected = sorted((cols.start + 10., rows.start + 20., cols.start + 30., rows.start + 40.)
                      for rows, cols in slices)
    assert len(slices) > 1 and set(padded) == {(128, 256)}  # windows padded to effdet's input
    assert sorted(map(tuple, predicted.pred_boxes.tolist())) == expected
    assert predicted.pred_labels.tolist() == [1] * len(slices)
