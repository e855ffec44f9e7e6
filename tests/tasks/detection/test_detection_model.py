"""RetinaNet, FCOS and Faster R-CNN on EfficientNet + FPN as MMEngine models."""
import pytest
import torch
import torch.nn as nn
from mmengine.dataset import pseudo_collate

from det_data import make_dataset
from effnet_backbones import EffNetFPN
from effnet_backbones.registry import MODELS
from tasks.detection import CocoDetDataset, DetSample, RetinaNet
from tasks.detection.geometry import BoxMapping

BACKBONE = dict(type='effnet_backbones.EfficientNet', arch='b0')
SMALL = dict(backbone=BACKBONE, num_classes=2, fpn=dict(out_channels=64))


def build(kind, **options):
    return MODELS.build(dict(type=f'effnet_backbones.{kind}', **{**SMALL, **options}))


@pytest.fixture(scope='module')
def batch(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp('coco'))
    ds = CocoDetDataset(str(root), 'train.json')
    return pseudo_collate([ds[0], ds[2]])  # both classes and a negative, of different sizes


def train_steps(model, batch, steps, lr=1e-3):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    totals = []
    for _ in range(steps):
        losses = model(**model.data_preprocessor(batch, True), mode='loss')
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    return losses, totals


def test_registry_config_builds_retinanet_from_the_issue():
    model = MODELS.build(dict(type='effnet_backbones.RetinaNet',
                              backbone=dict(type='effnet_backbones.EfficientNet', arch='b3'),
                              num_classes=5))
    assert isinstance(model, RetinaNet) and isinstance(model.fpn, EffNetFPN)
    assert model.fpn.body.arch == 'b3' and model.fpn.out_channels == 256
    assert model.fpn.p6_from == 'c5'
    assert model.detector.head.classification_head.num_classes == 5


def test_config_sets_anchors_thresholds_and_head():
    model = build('RetinaNet', anchor_sizes=(16, 32, 64, 128, 256), anchor_scales=(1.0, 1.5),
                  aspect_ratios=(1.0,), score_thresh=0.3, nms_thresh=0.4, detections_per_img=7,
                  head_norm=None, bbox_loss='smooth_l1')
    anchors = model.detector.anchor_generator
    assert anchors.sizes[0] == (16.0, 24.0) and anchors.aspect_ratios[0] == (1.0,)
    assert model.detector.head.classification_head.num_anchors == 2
    assert (model.detector.score_thresh, model.detector.nms_thresh,
            model.detector.detections_per_img) == (0.3, 0.4, 7)
    assert model.detector.head.regression_head._loss_type == 'smooth_l1'
    assert not any(isinstance(m, nn.GroupNorm) for m in model.detector.head.modules())
    with pytest.raises(ValueError, match='one base size per FPN level'):
        build('RetinaNet', anchor_sizes=(16, 32))
    with pytest.raises(ValueError, match='multiple of 32 and at least 64'):
        build('FCOS', fpn=dict(out_channels=32))  # GroupNorm(32, 32) fails on a 1 x 1 P7
    with pytest.raises(ValueError, match="dataset's job"):
        build('RetinaNet', detector_options=dict(min_size=800))


def test_retinanet_training_lowers_the_loss(batch):
    model = build('RetinaNet', anchor_sizes=(16, 32, 64, 128, 256))
    losses, totals = train_steps(model, batch, steps=3)
    assert set(losses) == {'loss_classification', 'loss_bbox_regression'}
    assert totals[-1] < totals[0]
    assert model.fpn.body.stem.conv.weight.grad.abs().sum() > 0  # gradients reach the backbone


@pytest.mark.parametrize('kind, keys', [
    ('FCOS', {'loss_classification', 'loss_bbox_regression', 'loss_bbox_ctrness'}),
    ('FasterRCNN', {'loss_classifier', 'loss_box_reg', 'loss_objectness', 'loss_rpn_box_reg'}),
])
def test_fcos_and_faster_rcnn_train_and_predict(batch, kind, keys):
    model = build(kind)
    losses, _ = train_steps(model, batch, steps=1)
    assert set(losses) == keys and all(torch.isfinite(v) for v in losses.values())
    assert model.fpn.body.stem.conv.weight.grad.abs().sum() > 0
    model.eval()
    samples = model.val_step(batch)
    for sample in samples:
        assert sample.pred_boxes.shape[1] == 4
        assert sample.pred_labels.numel() == 0 or 0 <= int(sample.pred_labels.min()) \
            and int(sample.pred_labels.max()) < 2  # Faster R-CNN's background label is removed


def test_fcos_p6_from_p5_and_strides_as_anchor_sizes():
    model = build('FCOS')
    assert model.fpn.p6_from == 'p5'
    assert [s[0] for s in model.detector.anchor_generator.sizes] == [8, 16, 32, 64, 128]


class FixedDetector(nn.Module):
    """Stands in for the torchvision detector: the same boxes, in network pixels, per image."""

    def __init__(self, boxes, label=0):
        super().__init__()
        self.boxes, self.label = boxes, label

    def forward(self, images):
        return [dict(boxes=self.boxes.clone(), scores=torch.ones(len(self.boxes)),
                     labels=torch.full((len(self.boxes),), self.label)) for _ in images]


def test_faster_rcnn_background_label_is_hidden():
    model = build('FasterRCNN')
    assert model.detector.roi_heads.box_predictor.cls_score.out_features == 3  # 2 + background
    assert model._target(DetSample('x', 1, (64, 64), (64, 64), gt_boxes=torch.ones(1, 4),
                                   gt_labels=torch.tensor([0])))['labels'].tolist() == [1]
    model.detector = FixedDetector(torch.tensor([[1.0, 1.0, 9.0, 9.0]]), label=1)
    [sample] = model.predict([torch.zeros(3, 64, 64)])
    assert sample.pred_labels.tolist() == [0]


def test_predictions_map_back_to_original_pixels():
    model = build('RetinaNet')
    # a 100 x 150 image letterboxed to 64 x 64: scale 64/150 on x, 43/100 on y
    mapping = BoxMapping(64 / 150, 43 / 100)
    network = torch.tensor([[30 * 64 / 150, 10 * 0.43, 90 * 64 / 150, 50 * 0.43],
                            [60, 40, 70, 64]])  # the second reaches into the padding
    model.detector = FixedDetector(network)
    sample = DetSample(img_path='x.png', img_id=1, ori_shape=(100, 150), img_shape=(64, 64),
                       mapping=mapping)
    [predicted] = model.predict([torch.zeros(3, 64, 64)], [sample])
    torch.testing.assert_close(predicted.pred_boxes[0], torch.tensor([30.0, 10.0, 90.0, 50.0]))
    assert predicted.pred_boxes[1].tolist()[2:] == [150.0, 100.0]  # clipped to the image
    assert predicted.img_path == 'x.png'


def test_modes_and_errors(batch):
    model = build('RetinaNet').eval()
    data = model.data_preprocessor(batch, False)
    levels = model(data['inputs'], mode='tensor')
    assert list(levels) == ['p3', 'p4', 'p5', 'p6', 'p7']
    assert levels['p3'].shape[-2:] == (128 // 8, 128 // 8)  # padded to a multiple of 128
    with pytest.raises(RuntimeError, match='model.train'):
        model(**data, mode='loss')
    model.train()
    samples = model(**data, mode='predict')  # switches to eval for the call ...
    assert len(samples) == 2 and model.training  # ... and back
    assert model.fpn.body.training
    with pytest.raises(ValueError, match='num_classes'):
        build('RetinaNet', num_classes=1)(**data, mode='loss')
