"""EfficientDet D0-D7 on our backbone against the ``effdet`` package's ``tf_efficientdet_d*``."""
import math
import re

import pytest
import torch
import torch.nn as nn
import torchvision

import effnet_backbones.efficientdet as efficientdet_module
from effnet_backbones import (EFFICIENTDET_CONFIGS, EfficientDetHeadNets, EfficientDetNet,
                              create_efficientdet, flatten_anchor_outputs, list_efficientdets)
from effnet_backbones.weights import load_pretrained

effdet = pytest.importorskip('effdet')  # the dev extra; the reference of every parity test here
from effdet.efficientdet import EfficientDet  # noqa: E402 (after the skip)

pytestmark = pytest.mark.usefixtures('one_thread')

LEVELS = ['d0', 'd1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7']
# DESIGN.md's reference figures (effdet.create_model(name, pretrained=False,
# pretrained_backbone=False), 90 classes)
REFERENCE_PARAMS = {'d0': 3_880_067, 'd1': 6_625_898, 'd3': 12_032_296}
FUSION_OF_FPN_NAME = {None: 'fast', 'bifpn_fa': 'fast', 'bifpn_attn': 'softmax', 'bifpn_sum': 'sum'}


def count(module):
    return sum(p.numel() for p in module.parameters())


def groups(ours, ref=None):
    """Parameters of (backbone, BiFPN, class net, box net), ours or effdet's."""
    if ref is not None:
        return [count(ref.backbone), count(ref.fpn), count(ref.class_net), count(ref.box_net)]
    return [count(ours.backbone.body), count(ours.backbone.bifpn), count(ours.head.class_net),
            count(ours.head.box_net)]


def effdet_model(level, image_size=None, fpn_name=None):
    """effdet's tf_efficientdet_<level> without weights and without stochastic depth."""
    config = effdet.get_efficientdet_config(f'tf_efficientdet_{level}')
    config.backbone_args = dict(drop_path_rate=0.0)
    if image_size is not None:  # effdet sizes its resampling from the configured input
        config.image_size = (image_size, image_size)
    if fpn_name is not None:
        config.fpn_name = fpn_name
    return EfficientDet(config, pretrained_backbone=False)


def _head_key(key):
    key = re.sub(r'conv_rep\.(\d+)\.conv_dw', r'repeats.\1.conv.depthwise', key)
    key = re.sub(r'conv_rep\.(\d+)\.conv_pw', r'repeats.\1.conv.pointwise', key)
    key = re.sub(r'bn_rep\.(\d+)\.(\d+)\.bn', r'repeats.\1.norms.\2', key)
    return key.replace('predict.conv_dw', 'predict.depthwise').replace('predict.conv_pw',
                                                                       'predict.pointwise')


def copy_effdet_weights(ref, ours):
    """Load effdet's weights into ours: the backbone through our timm loader, the BiFPN tensor by
    tensor in registration order (shapes checked), the heads by renamed keys."""
    load_pretrained(ours.backbone.body, ref.backbone.state_dict(), source='timm_tf')
    theirs, mine = ref.fpn.state_dict(), ours.backbone.bifpn.state_dict()
    assert len(theirs) == len(mine)
    for (their_key, value), (key, target) in zip(theirs.items(), mine.items()):
        assert value.shape == target.shape, (their_key, key)
    ours.backbone.bifpn.load_state_dict(dict(zip(mine, theirs.values())))
    for name in ('class_net', 'box_net'):
        getattr(ours.head, name).load_state_dict(
            {_head_key(key): value for key, value in getattr(ref, name).state_dict().items()})


def probe_loss(outputs):
    """A fixed random projection of every output (gradients reach every parameter)."""
    generator = torch.Generator().manual_seed(1)
    return sum((x * torch.randn(x.shape, generator=generator)).sum() for x in outputs)


# ------------------------------------------------------------------------------------- table
@pytest.mark.parametrize('level', LEVELS)
def test_table_is_effdets(level):
    ref = effdet.get_efficientdet_config(f'tf_efficientdet_{level}')
    ours = EFFICIENTDET_CONFIGS[level]
    assert f'tf_efficientnet_{ours.backbone}' == ref.backbone_name
    assert (ours.image_size, ours.image_size) == tuple(ref.image_size)
    assert (ours.width, ours.repeats, ours.head_repeats) == (
        ref.fpn_channels, ref.fpn_cell_repeats, ref.box_class_repeats)
    assert ours.fusion == FUSION_OF_FPN_NAME[ref.fpn_name]
    assert ours.anchor_scale == ref.anchor_scale and ours.num_scales == ref.num_scales
    assert [list(r) for r in ours.aspect_ratios] == [list(r) for r in ref.aspect_ratios]
    assert (ours.min_level, ours.max_level) == (ref.min_level, ref.max_level)
    assert ours.drop_path_rate == ref.backbone_args['drop_path_rate']
    assert ours.num_anchors == 9 and ours.size_divisor == 128


# ------------------------------------------------------------------------- parameter parity
@pytest.mark.parametrize('level', LEVELS)
def test_parameter_counts_equal_effdets(level):
    ref = effdet.create_model(f'tf_efficientdet_{level}', pretrained=False,
                              pretrained_backbone=False)
    ours = create_efficientdet(level)
    assert count(ours) == count(ref)
    assert groups(ours) == groups(None, ref)
    if level in REFERENCE_PARAMS:
        assert count(ours) == REFERENCE_PARAMS[level]


def test_d0_group_breakdown():
    # backbone (B0 to the stride-32 tap, no conv_head), BiFPN, class net, box net
    assert groups(create_efficientdet('d0')) == [3_595_388, 196_281, 69_354, 19_044]


# ---------------------------------------------------------------------------- output parity
@pytest.mark.parametrize('level,size', [('d0', 256), ('d1', 128)])
def test_outputs_equal_effdets_with_its_weights(level, size):
    ref = effdet_model(level, image_size=size).train()
    ours = create_efficientdet(level, backbone_options=dict(drop_path_rate=0.0)).train()
    copy_effdet_weights(ref, ours)
    image = torch.randn(2, 3, size, size)
    with torch.no_grad():  # training mode: batch statistics, no vanishing random-init activations
        expected, actual = ref(image), ours(image)
    for theirs, mine in zip(expected, actual):
        assert [tuple(x.shape) for x in mine] == [tuple(x.shape) for x in theirs]
        for a, b in zip(theirs, mine):
            assert (b - a).abs().max() <= 1e-4 * a.abs().max()
    strides = [8, 16, 32, 64, 128]
    assert [tuple(x.shape) for x in actual[0]] == [(2, 9 * 90, size // s, size // s) for s in strides]
    assert [tuple(x.shape) for x in actual[1]] == [(2, 9 * 4, size // s, size // s) for s in strides]


@pytest.mark.parametrize('fusion,fpn_name', [('softmax', 'bifpn_attn'), ('sum', 'bifpn_sum')])
def test_other_fusions_equal_effdets(fusion, fpn_name):
    ref = effdet_model('d0', image_size=128, fpn_name=fpn_name).train()
    ours = create_efficientdet('d0', fusion=fusion, backbone_options=dict(drop_path_rate=0.0)).train()
    assert count(ours) == count(ref)
    copy_effdet_weights(ref, ours)
    with torch.no_grad():  # effdet's nodes start at weight 1; move them to tell the fusions apart
        for mine in ours.backbone.bifpn.parameters():
            if mine.dim() == 1 and mine.numel() <= 3 and torch.equal(mine, torch.ones_like(mine)):
                mine.copy_(torch.linspace(0.3, 1.7, mine.numel()))
        ref.fpn.load_state_dict(dict(zip(ref.fpn.state_dict(),
                                         ours.backbone.bifpn.state_dict().values())))
    image = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        (ref_class, ref_box), (our_class, our_box) = ref(image), ours(image)
        for a, b in zip(ref_class + ref_box, our_class + our_box):
            assert (b - a).abs().max() <= 1e-4 * a.abs().max()


# ------------------------------------------------------------------------------------ layout
def test_flatten_is_torchvisions_retinanet_layout():
    num_classes, anchors = 5, 9
    heads = EfficientDetHeadNets(16, num_classes, num_levels=2, repeats=1)
    class_outputs = [torch.randn(2, anchors * num_classes, 4, 6), torch.randn(2, anchors * num_classes, 2, 3)]
    box_outputs = [torch.randn(2, anchors * 4, 4, 6), torch.randn(2, anchors * 4, 2, 3)]
    logits, deltas = heads.flatten(class_outputs, box_outputs)
    assert logits.shape == (2, (24 + 6) * anchors, num_classes) and deltas.shape == (2, 30 * anchors, 4)
    # anchor (level 1, y=1, x=2, a=7), class 3: after the 24 * 9 anchors of level 0
    index = 24 * anchors + (1 * 3 + 2) * anchors + 7
    assert logits[1, index, 3] == class_outputs[1][1, 7 * num_classes + 3, 1, 2]
    assert deltas[1, index, 2] == box_outputs[1][1, 7 * 4 + 2, 1, 2]
    # torchvision's RetinaNet heads flatten the same way (their convs replaced by identities)
    tv_class = torchvision.models.detection.retinanet.RetinaNetClassificationHead(8, anchors, num_classes)
    tv_class.conv, tv_class.cls_logits = nn.Identity(), nn.Identity()
    torch.testing.assert_close(tv_class(class_outputs), logits)
    tv_box = torchvision.models.detection.retinanet.RetinaNetRegressionHead(8, anchors)
    tv_box.conv, tv_box.bbox_reg = nn.Identity(), nn.Identity()
    torch.testing.assert_close(tv_box(box_outputs), deltas)
    # and as effdet flattens for its anchors (level, y, x, anchor)
    effdet_order = torch.cat([x.permute(0, 2, 3, 1).reshape(2, -1, num_classes) for x in class_outputs], 1)
    torch.testing.assert_close(flatten_anchor_outputs(class_outputs, num_classes), effdet_order)


def test_heads_share_convs_and_keep_a_norm_per_level():
    model = create_efficientdet('d0')
    for head, outputs in ((model.head.class_net, 90), (model.head.box_net, 4)):
        assert len(head.repeats) == 3
        for repeat in head.repeats:
            assert len(repeat.norms) == 5 and repeat.conv.pointwise.bias is not None
        assert head.predict.pointwise.out_channels == 9 * outputs
    bias = model.head.class_net.predict.pointwise.bias
    torch.testing.assert_close(bias.sigmoid(), torch.full_like(bias, 0.01))  # RetinaNet's prior
    assert torch.equal(model.head.box_net.predict.pointwise.bias, torch.zeros(36))


# ------------------------------------------------------------------------------- training use
@pytest.mark.parametrize('level,size', [('d0', 256), ('d1', 128)])
def test_forward_backward_reaches_every_parameter(level, size):
    model = create_efficientdet(level, num_classes=3).train()
    class_outputs, box_outputs = model(torch.randn(2, 3, size, size))
    assert [x.shape[1] for x in class_outputs] == [27] * 5
    probe_loss(class_outputs + box_outputs).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []  # DDP needs no find_unused_parameters


def test_padded_small_and_odd_inputs():
    model = create_efficientdet('d0', num_classes=2).eval()
    assert model.size_divisor == 128 and model.strides == [8, 16, 32, 64, 128]
    image = torch.randn(1, 3, 100, 150)  # smaller than P7's stride, not divisible by it
    padded = nn.functional.pad(image, [0, 256 - 150, 0, 128 - 100])
    with torch.no_grad():
        class_outputs, box_outputs = model(padded)
    assert [x.shape[-2:] for x in box_outputs] == [x.shape[-2:] for x in class_outputs]
    assert [tuple(x.shape[-2:]) for x in class_outputs] == [(16, 32), (8, 16), (4, 8), (2, 4), (1, 2)]


def grads_and_stats(model, image):
    class_outputs, box_outputs = model(image)
    probe_loss(class_outputs + box_outputs).backward()
    return ({name: p.grad.clone() for name, p in model.named_parameters()},
            {name: b.clone() for name, b in model.named_buffers()})


def assert_same_grads_and_stats(grads, stats, expected_grads, expected_stats):
    """Gradients equal to float32 rounding, bounded per module, and running statistics equal.

    The bound is 1e-5 of the module's largest gradient, not the tensor's own: a norm's bias whose
    output feeds another training-mode BN through a 1x1 conv (a block without a skip) has a true
    gradient of zero, computed as a cancelling sum of terms the size of the weight's gradient
    (measured: 3.9e-3 beside a weight gradient of 4.5e3), which any other operator order changes.
    """
    scale = {}
    for name, grad in expected_grads.items():
        module = name.rpartition('.')[0]
        scale[module] = max(scale.get(module, 0.0), grad.abs().max().item())
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5,
                                   atol=1e-5 * scale[name.rpartition('.')[0]], msg=name)
    for name, value in expected_stats.items():
        torch.testing.assert_close(stats[name], value, msg=name)


@pytest.mark.parametrize('backbone_cp,neck_cp', [('block', 'node'), ('stage', 'cell')])
def test_checkpointing_gives_the_same_gradients(backbone_cp, neck_cp):
    plain = create_efficientdet('d0', backbone_options=dict(drop_path_rate=0.0)).train()
    checkpointed = create_efficientdet('d0', backbone_options=dict(drop_path_rate=0.0,
                                                                   with_cp=backbone_cp)).train()
    assert checkpointed.backbone.bifpn.with_cp == neck_cp and checkpointed.head.with_cp
    checkpointed.load_state_dict(plain.state_dict())
    calls = []
    # pre-hooks: recomputation may stop early, once it has every tensor backward needs
    checkpointed.backbone.bifpn.cells[2].nodes[0].register_forward_pre_hook(lambda *a: calls.append('node'))
    checkpointed.head.box_net.repeats[1].register_forward_pre_hook(lambda *a: calls.append('head'))
    image = torch.randn(2, 3, 128, 128)
    expected_grads, expected_stats = grads_and_stats(plain, image)
    grads, stats = grads_and_stats(checkpointed, image)
    assert sorted(calls) == ['head', 'head', 'node', 'node']  # each ran again in backward
    assert_same_grads_and_stats(grads, stats, expected_grads, expected_stats)


def test_memory_efficient_heads_fuse_norm_and_act(monkeypatch):
    plain = create_efficientdet('d0', backbone_options=dict(drop_path_rate=0.0)).train()
    fused = create_efficientdet('d0', backbone_options=dict(drop_path_rate=0.0,
                                                            memory_efficient=True)).train()
    assert fused.backbone.body.memory_efficient
    fused.load_state_dict(plain.state_dict())
    calls = []
    real = efficientdet_module.norm_act
    monkeypatch.setattr(efficientdet_module, 'norm_act',
                        lambda *args: calls.append(1) or real(*args))
    image = torch.randn(2, 3, 128, 128)
    expected_grads, expected_stats = grads_and_stats(plain, image)
    grads, stats = grads_and_stats(fused, image)
    assert len(calls) == 2 * 3 * 5  # two heads x three repeats x five levels
    assert_same_grads_and_stats(grads, stats, expected_grads, expected_stats)


# ------------------------------------------------------------------------------------ builder
def test_names_overrides_and_backbone_defaults():
    assert list_efficientdets() == [f'efficientdet_d{i}' for i in range(8)]
    for name in ('d1', 'efficientdet_d1', 'tf_efficientdet_d1', 'D1'):
        assert create_efficientdet(name, repeats=1).config.width == 88
    model = create_efficientdet('d0', num_classes=7, width=32, repeats=1, head_repeats=1)
    assert isinstance(model, EfficientDetNet)
    assert model.backbone.out_channels == 32 and len(model.backbone.bifpn.cells) == 1
    assert model.head.class_net.predict.pointwise.out_channels == 63
    body = model.backbone.body  # the TF ports' settings without weights, the table's stochastic depth
    assert body.padding == 'same' and body.norm_eps == 1e-3 and body.out_indices == (2, 3, 4)
    assert body.config['drop_path_rate'] == 0.2
    assert model.backbone.bifpn.padding == 'same'
    other = create_efficientdet('d0', repeats=1, backbone_options=dict(arch='b2', padding='symmetric'))
    assert other.backbone.body.arch == 'b2' and other.backbone.bifpn.padding == 'symmetric'
    assert EFFICIENTDET_CONFIGS['d7'].backbone == 'b6' and EFFICIENTDET_CONFIGS['d7'].anchor_scale == 5.0


def test_bad_requests_are_refused_clearly():
    with pytest.raises(ValueError, match=r"unknown EfficientDet 'd8'; valid: d0, d1, .*d7"):
        create_efficientdet('d8')
    with pytest.raises(ValueError, match='unknown EfficientDet'):
        create_efficientdet('b0')
    with pytest.raises(TypeError, match=r"unknown overrides \['depth'\]; valid: .*width"):
        create_efficientdet('d0', depth=3)
    with pytest.raises(ValueError, match='repeats must be an int >= 1, got 0'):
        create_efficientdet('d0', repeats=0)
    with pytest.raises(ValueError, match='head_repeats must be an int >= 1'):
        create_efficientdet('d0', head_repeats=0)
    with pytest.raises(ValueError, match='width must be an int >= 1'):
        create_efficientdet('d0', width=0)
    with pytest.raises(ValueError, match='fusion must be one of'):
        create_efficientdet('d0', fusion='max')
    with pytest.raises(ValueError, match='num_classes must be an int >= 1'):
        create_efficientdet('d0', num_classes=0)
    with pytest.raises(ValueError, match=r'use out_indices=\(2, 3, 4\)'):
        create_efficientdet('d0', backbone_options=dict(out_indices=(3, 4)))
    with pytest.raises(TypeError, match='backbone_options must be a dict'):
        create_efficientdet('d0', backbone_options='b0')
    assert math.isclose(EFFICIENTDET_CONFIGS['d0'].anchor_scale, 4.0)
