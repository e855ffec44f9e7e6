"""EfficientDet as a detector: effdet's anchors and loss reproduced exactly, effdet's parameter
count for the whole task model, any input size, the configs, and bad options named."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from effnet_backbones import create_efficientdet
from tasks.detection import EfficientDet
from tasks.detection.efficientdet import EffDetAnchorGenerator
from tasks.detection.sample import DetSample

effdet = pytest.importorskip('effdet')
ROOT = Path(__file__).resolve().parents[3]


class _Images:
    """The piece of torchvision's ImageList an anchor generator reads."""

    def __init__(self, count):
        self.image_sizes = [(0, 0)] * count


def _levels(height, width):
    return [torch.zeros(1, 1, height // 2 ** level, width // 2 ** level) for level in range(3, 8)]


@pytest.mark.parametrize('name,anchor_scale', [('tf_efficientdet_d0', 4.0),
                                               ('tf_efficientdet_d7', 5.0)])
def test_anchors_are_effdets(name, anchor_scale):
    from effdet import get_efficientdet_config
    from effdet.anchors import Anchors

    config = get_efficientdet_config(name)
    config.image_size = (256, 384)
    reference = Anchors.from_config(config).boxes[:, [1, 0, 3, 2]]  # effdet's are y1, x1, y2, x2
    ours = EffDetAnchorGenerator([8, 16, 32, 64, 128], anchor_scale)(_Images(2), _levels(256, 384))
    assert len(ours) == 2 and ours[0].shape == reference.shape
    torch.testing.assert_close(ours[0], reference, rtol=1e-6, atol=1e-4)  # float32 rounding


def test_the_task_model_has_effdets_parameters():
    model = EfficientDet(variant='d0', num_classes=90)
    assert sum(p.numel() for p in model.parameters()) == 3_880_067
    library = create_efficientdet('d0', num_classes=90)
    assert sum(p.numel() for p in model.parameters()) == \
        sum(p.numel() for p in library.parameters())


def _samples():
    return [DetSample(img_path='a', img_id=0, ori_shape=(100, 150), img_shape=(100, 150),
                      gt_boxes=torch.tensor([[10., 12., 58., 50.]]), gt_labels=torch.tensor([1])),
            DetSample(img_path='b', img_id=1, ori_shape=(200, 90), img_shape=(200, 90),
                      gt_boxes=torch.tensor([[5., 20., 70., 120.], [30., 130., 62., 170.]]),
                      gt_labels=torch.tensor([0, 2]))]


def test_the_loss_is_effdets_loss(monkeypatch):
    """Same network outputs, same boxes: our focal + Huber loss equals effdet's DetectionLoss on
    effdet's own anchor labels (its box coder orders offsets y, x, h, w; ours x, y, w, h)."""
    from effdet import get_efficientdet_config
    from effdet.anchors import AnchorLabeler, Anchors
    from effdet.loss import DetectionLoss

    torch.manual_seed(0)
    model = EfficientDet(variant='d0', num_classes=3, backbone=dict(in_chans=1)).train()
    images = [torch.randn(1, 100, 150), torch.randn(1, 200, 90)]
    captured = {}
    head = model.detector.head
    original = head.nets.forward

    def keep(levels):
        captured['outputs'] = original(levels)
        return captured['outputs']
    monkeypatch.setattr(head.nets, 'forward', keep)
    ours = model(images, _samples(), mode='loss')
    class_out, box_out = captured['outputs']
    # effdet's layout: per level (N, A * 4, H, W) with each anchor's 4 values as ty, tx, th, tw
    box_yx = [b.view(b.shape[0], -1, 4, *b.shape[-2:])[:, :, [1, 0, 3, 2]].reshape(b.shape)
              for b in box_out]
    config = get_efficientdet_config('tf_efficientdet_d0')
    config.num_classes, config.image_size = 3, (256, 256)  # the padded batch
    labeller = AnchorLabeler(Anchors.from_config(config), 3, match_threshold=0.5)
    boxes = [s.gt_boxes[:, [1, 0, 3, 2]] for s in _samples()]
    classes = [s.gt_labels.float() + 1 for s in _samples()]
    cls_targets, box_targets, positives = labeller.batch_label_anchors(boxes, classes)
    _, class_loss, box_loss = DetectionLoss(config)(class_out, box_yx, cls_targets, box_targets,
                                                    positives)
    torch.testing.assert_close(ours['loss_classification'], class_loss, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours['loss_bbox_regression'], 50.0 * box_loss, rtol=1e-4,
                               atol=1e-6)


def test_any_input_size_is_padded_inside_and_mapped_back():
    torch.manual_seed(0)
    model = EfficientDet(variant='d0', num_classes=3, backbone=dict(in_chans=1),
                         score_thresh=0.0).eval()
    images = [torch.randn(1, 100, 150), torch.randn(1, 70, 90)]  # smaller than P7's 128
    levels = model(images, mode='tensor')
    # the batch is padded to 128 x 256 (the next multiples of P7's stride)
    assert [tuple(level.shape[-2:]) for level in levels.values()] == \
        [(16, 32), (8, 16), (4, 8), (2, 4), (1, 2)]
    results = model(images, _samples(), mode='predict')
    for sample, result in zip(_samples(), results):
        height, width = sample.ori_shape
        boxes = result.pred_boxes
        assert len(boxes) and boxes[:, 0::2].max() <= width and boxes[:, 1::2].max() <= height


def test_groupnorm_in_the_bifpn_and_heads_normalises_each_image_by_itself():
    """norm_layer='gn': the BiFPN's and head nets' norms are GroupNorm (the backbone keeps its
    BatchNorm), the parameters are effdet's count, and a training forward gives each image the
    outputs it gets alone once the backbone's batch statistics are fixed (BN would mix them)."""
    from torch import nn
    model = EfficientDet(variant='d0', num_classes=3, backbone=dict(in_chans=1), norm_layer='gn')
    norms = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            part = 'bifpn' if '.bifpn.' in name else 'head' if '.head.' in name else 'backbone'
            norms.setdefault(part, set()).add(type(module).__name__)
    assert norms == dict(backbone={'BatchNorm2d'}, bifpn={'GroupNorm'}, head={'GroupNorm'})
    assert sum(p.numel() for p in model.parameters()) == \
        sum(p.numel() for p in EfficientDet(variant='d0', num_classes=3,
                                            backbone=dict(in_chans=1)).parameters())
    torch.manual_seed(0)
    images = torch.randn(2, 1, 256, 256)  # P7 2 x 2: BN can train on one image
    net = model.detector
    net.train()
    for module in net.backbone.body.modules():  # the EfficientNet: fixed statistics
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    with torch.no_grad():
        together = net.head(list(net.backbone(images).values()))
        alone = net.head(list(net.backbone(images[:1]).values()))
    torch.testing.assert_close(together['cls_logits'][:1], alone['cls_logits'], rtol=1e-3, atol=1e-4)
    bn_model = EfficientDet(variant='d0', num_classes=3, backbone=dict(in_chans=1)).detector.train()
    for module in bn_model.backbone.body.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    with torch.no_grad():
        mixed = bn_model.head(list(bn_model.backbone(images).values()))['cls_logits'][:1]
        single = bn_model.head(list(bn_model.backbone(images[:1]).values()))['cls_logits']
    assert not torch.allclose(mixed, single, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize('kwargs,message', [
    (dict(variant='d9'), "unknown EfficientDet 'd9'"),
    (dict(norm_layer='gnn'), "unknown norm_layer 'gnn'"),
    (dict(bifpn=dict(widht=64)), "bifpn: unknown key 'widht'"),
    (dict(fpn=dict(out_channels=64)), "has no 'fpn' options"),
    (dict(loss=dict(gamma=2.0)), "loss: unknown key 'gamma'"),
    (dict(bifpn=dict(fusion='max')), 'fusion'),
])
def test_bad_options_are_named(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        EfficientDet(**{'num_classes': 2, **kwargs})


def test_every_efficientdet_config_loads_and_the_demo_builds():
    from effnet_backbones.registry import MODELS
    from tasks.engine.data import resolve_from_data
    sizes = {}
    for path in sorted((ROOT / 'configs' / 'efficientdet').glob('*.py')):
        cfg = Config.fromfile(str(path))
        sizes[cfg.model.variant] = cfg.train_dataloader.dataset.img_size
    assert sizes == {'d0': 512, 'd1': 640, 'd2': 768, 'd3': 896, 'd4': 1024, 'd5': 1280,
                     'd6': 1280, 'd7': 1536}
    cfg = Config.fromfile(str(ROOT / 'configs' / 'efficientdet_d0_nuclei_demo.py'))
    for module in cfg.custom_imports.imports:
        __import__(module)
    resolve_from_data(cfg)
    model = MODELS.build(cfg.model)
    assert isinstance(model, EfficientDet) and model.num_classes == 1
    assert model.detector.anchor_generator.shapes[0][0] == (16.0, 16.0)  # anchor_scale 2 at P3


def test_a_checkpoint_of_another_variant_is_named_not_loaded_partly(tmp_path):
    from tasks.engine.checkpoint import CheckpointMismatchError, check_checkpoint_fits
    d0 = EfficientDet(variant='d0', num_classes=2)
    d1 = EfficientDet(variant='d1', num_classes=2)
    check_checkpoint_fits(d0, d0.state_dict(), 'same.pth')  # a fitting checkpoint passes
    with pytest.raises(CheckpointMismatchError) as caught:
        check_checkpoint_fits(d1, d0.state_dict(), 'd0.pth')
    message = str(caught.value)
    assert 'd0.pth' in message and 'EfficientDet-D1' in message and 'another shape' in message
    assert 'missing' in message  # D1's fourth BiFPN cell has no tensors in a D0 checkpoint
