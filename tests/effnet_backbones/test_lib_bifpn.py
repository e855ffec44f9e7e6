"""BiFPN and EffNetBiFPN: EfficientDet's neck over the stride 8/16/32 taps, as P3-P7."""
import pytest
import torch
import torch.nn as nn
import torchvision

from effnet_backbones import BiFPN, EffNetBiFPN, EfficientNet
from effnet_backbones.bifpn import FusionNode, MaxPoolDown, Projection, bifpn_graph
from effnet_backbones.registry import MODELS

pytestmark = pytest.mark.usefixtures('one_thread')

NAMES = ['p3', 'p4', 'p5', 'p6', 'p7']


def small_neck(**options):
    """B0 + a narrow single-cell BiFPN, cheap enough for every test."""
    options.setdefault('width', 32)
    options.setdefault('repeats', 1)
    return EffNetBiFPN(dict(arch='b0'), **options)


def probe_loss(levels):
    """A fixed random projection of every level: unlike a mean or a mean square of BN outputs in
    training (constants), its gradient reaches every parameter."""
    generator = torch.Generator().manual_seed(1)
    return sum((level * torch.randn(level.shape, generator=generator)).sum()
               for level in levels.values())


def test_graph_is_efficientdets_top_down_then_bottom_up():
    nodes, outputs = bifpn_graph(3, 7)
    # positions 0-4 are P3-P7 in, 5-12 the nodes: P6td P5td P4td P3out, P4out P5out P6out P7out
    assert [(node.level, node.inputs) for node in nodes] == [
        (6, (3, 4)), (5, (2, 5)), (4, (1, 6)), (3, (0, 7)),
        (4, (1, 7, 8)), (5, (2, 6, 9)), (6, (3, 5, 10)), (7, (4, 11))]
    assert outputs == (8, 9, 10, 11, 12)
    # other level ranges follow the same rule (effdet's d7x uses P3-P8)
    nodes, outputs = bifpn_graph(3, 5)
    assert [(node.level, node.inputs) for node in nodes] == [
        (4, (1, 2)), (3, (0, 3)), (4, (1, 3, 4)), (5, (2, 5))]
    assert outputs == (4, 5, 6)


@pytest.mark.parametrize('size', [(128, 128), (128, 256)])
def test_levels_strides_and_channels(size):
    neck = small_neck().eval()
    with torch.no_grad():
        levels = neck(torch.randn(1, 3, *size))
    assert list(levels) == NAMES and list(neck.level_names) == NAMES
    assert neck.out_channels == 32 and neck.size_divisor == 128
    assert neck.strides == [8, 16, 32, 64, 128]
    for (name, level), stride in zip(levels.items(), neck.strides):
        assert level.shape == (1, 32, size[0] // stride, size[1] // stride), name
    info = neck.feature_info
    assert info.channels() == [32] * 5 and info.reduction() == [8, 16, 32, 64, 128]
    modules = dict(neck.named_modules())
    assert all(isinstance(modules[name], FusionNode) for name in info.module_name())
    assert [modules[name].level for name in info.module_name()] == [3, 4, 5, 6, 7]


def test_first_cell_projects_each_tap_once_per_reading_node():
    neck = EffNetBiFPN(dict(arch='b0'), width=64, repeats=3)
    first, later = neck.bifpn.cells[0], neck.bifpn.cells[1:]
    projected = [(node.level, index, resample.project.conv.in_channels)
                 for node in first.nodes for index, resample in enumerate(node.resample)
                 if isinstance(resample.project, Projection)]
    # P5 (320) feeds P5td and P5out, P4 (112) feeds P4td and P4out, P3 (40) only P3out
    assert sorted(projected) == [(3, 0, 40), (4, 0, 112), (4, 0, 112), (5, 0, 320), (5, 0, 320)]
    assert not any(isinstance(m, Projection) for cell in later for m in cell.modules())
    # P6 from the stride-32 tap: projection + pool; P7 from P6: pool only
    p6, p7 = neck.bifpn.extra_levels
    assert isinstance(p6.project, Projection) and p6.project.conv.in_channels == 320
    assert isinstance(p6.pool, MaxPoolDown) and isinstance(p7.project, nn.Identity)


def test_node_convs_bias_and_norm_placement():
    neck = small_neck()
    node = neck.bifpn.cells[0].nodes[0]
    assert node.conv.depthwise.groups == 32 and node.conv.depthwise.bias is None
    assert node.conv.pointwise.bias is not None  # the TF-ported weights' redundant bias
    assert isinstance(node.norm, nn.BatchNorm2d) and node.norm.eps == 1e-3
    assert node.norm.momentum == 0.01 and isinstance(node.act, nn.SiLU)
    without = small_neck(conv_bias=False)
    assert without.bifpn.cells[0].nodes[0].conv.pointwise.bias is None
    assert sum(p.numel() for p in without.parameters()) < sum(p.numel() for p in neck.parameters())


@pytest.mark.parametrize('fusion', ['fast', 'softmax'])
def test_fusion_weights_are_one_scalar_per_input(fusion):
    neck = small_neck(fusion=fusion)
    for node in neck.bifpn.cells[0].nodes:
        assert node.weights.shape == (len(node.resample),)
        assert torch.equal(node.weights.detach(), torch.ones(len(node.resample)))
    node = neck.bifpn.cells[0].nodes[4]  # three inputs
    with torch.no_grad():
        node.weights.copy_(torch.tensor([2.0, -1.0, 0.5]))
    expected = (torch.tensor([2.0, 0.0, 0.5]) / (2.5 + 1e-4) if fusion == 'fast'
                else torch.softmax(torch.tensor([2.0, -1.0, 0.5]), 0))
    torch.testing.assert_close(node.fusion_weights(torch.float32), expected)


def test_the_three_fusions_run_and_differ():
    outputs, counts = {}, {}
    image = torch.randn(2, 3, 128, 128)  # batch 2: P7 is 1x1, BN needs two values to train
    for fusion in ('fast', 'softmax', 'sum'):
        torch.manual_seed(0)
        neck = small_neck(fusion=fusion).train()
        for node in neck.bifpn.cells[0].nodes:
            if node.weights is not None:  # away from all-ones, where fast and softmax nearly agree
                with torch.no_grad():
                    node.weights.copy_(torch.linspace(0.2, 2.0, len(node.weights)))
        levels = neck(image)
        probe_loss(levels).backward()
        outputs[fusion] = torch.cat([level.detach().flatten() for level in levels.values()])
        counts[fusion] = sum(p.numel() for p in neck.parameters())
        weights = [node.weights for node in neck.bifpn.cells[0].nodes if node.weights is not None]
        assert len(weights) == (0 if fusion == 'sum' else 8)
        assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)
    assert not torch.allclose(outputs['fast'], outputs['softmax'], rtol=1e-3, atol=1e-4)
    assert not torch.allclose(outputs['fast'], outputs['sum'], rtol=1e-3, atol=1e-4)
    # 'sum' has no weights: 2 inputs x 4 top-down nodes + 3 x 3 + 2 bottom-up ones = 19 fewer
    assert counts['fast'] == counts['softmax'] == counts['sum'] + 19


@pytest.mark.parametrize('side', [7, 8, 13, 16])
def test_max_pool_padding_matches_tf_same_and_symmetric(side):
    from timm.layers import create_pool2d

    x = torch.randn(1, 2, side, side + 3)
    torch.testing.assert_close(MaxPoolDown('same')(x),
                               create_pool2d('max', kernel_size=3, stride=2, padding='same')(x))
    torch.testing.assert_close(MaxPoolDown('symmetric')(x), nn.MaxPool2d(3, 2, 1)(x))
    assert MaxPoolDown('same')(x).shape[-2:] == (-(-side // 2), -(-(side + 3) // 2))


def test_padding_follows_the_backbone_unless_given():
    assert small_neck().bifpn.padding == 'symmetric'  # the backbone's default
    assert EffNetBiFPN(dict(arch='b0', padding='same'), width=32, repeats=1).bifpn.padding == 'same'
    assert small_neck(padding='same').bifpn.padding == 'same'


def test_unpadded_and_padded_odd_inputs():
    neck = small_neck().eval()
    image = torch.randn(1, 3, 100, 150)
    padded = nn.functional.pad(image, [0, 256 - 150, 0, 128 - 100])
    with torch.no_grad():
        levels = neck(padded)
        unpadded = neck(image)  # levels halve with ceil, as the backbone's convs do
    assert [tuple(v.shape[-2:]) for v in levels.values()] == [(16, 32), (8, 16), (4, 8), (2, 4), (1, 2)]
    assert [tuple(v.shape[-2:]) for v in unpadded.values()] == [(13, 19), (7, 10), (4, 5), (2, 3), (1, 2)]


def test_torchvision_retinanet_trains_on_it():
    neck = small_neck()
    model = torchvision.models.detection.RetinaNet(neck, num_classes=3, min_size=128, max_size=128)
    model.transform.size_divisible = neck.size_divisor
    targets = [dict(boxes=torch.tensor([[10.0, 20.0, 60.0, 90.0]]), labels=torch.tensor([1])),
               dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))]
    losses = model([torch.rand(3, 128, 128), torch.rand(3, 128, 128)], targets)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in neck.bifpn.parameters())
    model.eval()
    with torch.no_grad():
        assert set(model([torch.rand(3, 100, 120)])[0]) == {'boxes', 'scores', 'labels'}


def test_other_level_ranges():
    neck = EffNetBiFPN(dict(arch='b0', out_indices=(1, 2, 3, 4)), width=16, repeats=1,
                       min_level=2, max_level=6).eval()
    assert neck.level_names == ('p2', 'p3', 'p4', 'p5', 'p6') and neck.size_divisor == 64
    with torch.no_grad():
        levels = neck(torch.randn(1, 3, 64, 64))
    assert [v.shape[-1] for v in levels.values()] == [16, 8, 4, 2, 1]
    # P3-P5 without extra levels: no pooling stage, the stride-32 tap feeds the cells directly
    short = EffNetBiFPN(dict(arch='b0'), width=16, repeats=1, max_level=5)
    assert len(short.bifpn.extra_levels) == 0 and short.strides == [8, 16, 32]


def test_bifpn_over_plain_tensors():
    neck = BiFPN([24, 48, 96], width=16, repeats=2).eval()
    with torch.no_grad():
        levels = neck([torch.randn(2, 24, 32, 32), torch.randn(2, 48, 16, 16),
                       torch.randn(2, 96, 8, 8)])
    assert [tuple(v.shape) for v in levels] == [(2, 16, 32 // 2 ** i, 32 // 2 ** i) for i in range(5)]
    with pytest.raises(ValueError, match='built for 3 input maps'):
        neck([torch.randn(2, 24, 32, 32)])


def test_bad_options_are_refused_clearly():
    with pytest.raises(ValueError, match=r'out_indices=\(2, 3, 4\)'):
        EffNetBiFPN(EfficientNet('b0', out_indices=(3, 4)))
    with pytest.raises(ValueError, match=r'levels \(1, 2, 3, 4\) .*use out_indices=\(1, 2, 3, 4\)'):
        EffNetBiFPN(EfficientNet('b0', out_indices=(2, 3, 4)), min_level=2)
    with pytest.raises(ValueError, match='min_level must be one of'):
        small_neck(min_level=0)
    with pytest.raises(ValueError, match='max_level must be an int above min_level=3'):
        small_neck(max_level=3)
    with pytest.raises(ValueError, match='output stride of 32'):
        EffNetBiFPN(dict(arch='b0', output_stride=16))
    for width in (0, -8, 2.5, True, '64'):
        with pytest.raises(ValueError, match='width must be an int >= 1'):
            small_neck(width=width)
    with pytest.raises(ValueError, match='repeats must be an int >= 1, got 0'):
        small_neck(repeats=0)
    with pytest.raises(ValueError, match=r"fusion must be one of \('fast', 'softmax', 'sum'\)"):
        small_neck(fusion='mean')
    with pytest.raises(ValueError, match='with_cp must be'):
        small_neck(with_cp='block')
    with pytest.raises(ValueError, match='in_channels must list 1 ... 5'):
        BiFPN([8] * 6)
    with pytest.raises(TypeError, match='backbone must be an EfficientNet'):
        EffNetBiFPN('b0')


def test_effdet_fusion_names_are_accepted():
    assert small_neck(fusion='fastattn').bifpn.fusion == 'fast'
    assert small_neck(fusion='attn').bifpn.fusion == 'softmax'


def test_checkpointing_follows_the_backbone():
    assert small_neck().bifpn.with_cp is None
    assert EffNetBiFPN(dict(arch='b0', with_cp=True), width=16, repeats=1).bifpn.with_cp == 'cell'
    assert EffNetBiFPN(dict(arch='b0', with_cp='block'), width=16, repeats=1).bifpn.with_cp == 'node'
    assert EffNetBiFPN(dict(arch='b0', with_cp='block'), width=16, repeats=1,
                       with_cp=False).bifpn.with_cp is None
    neck = small_neck(with_cp='node')
    assert all(cell.checkpoint_nodes for cell in neck.bifpn.cells)
    neck.bifpn.with_cp = 'cell'
    assert not any(cell.checkpoint_nodes for cell in neck.bifpn.cells)


@pytest.mark.parametrize('mode', ['cell', 'node'])
def test_checkpointed_neck_has_the_same_gradients(mode):
    torch.manual_seed(0)
    plain = small_neck(repeats=2).train()
    checkpointed = small_neck(repeats=2, with_cp=mode).train()
    checkpointed.load_state_dict(plain.state_dict())
    calls = []
    # a pre-hook: recomputation may stop early, once it has every tensor backward needs
    checkpointed.bifpn.cells[1].nodes[2].register_forward_pre_hook(lambda *args: calls.append(1))
    image = torch.randn(2, 3, 128, 128)
    for model in (plain, checkpointed):
        levels = model(image)
        probe_loss(levels).backward()
    assert len(calls) == 2  # forward, then the recomputation in backward
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)
    for (name, a), b in zip(plain.named_buffers(), checkpointed.buffers()):
        torch.testing.assert_close(b, a, msg=name)  # BN statistics stepped once, not twice


def test_registry_builds_it():
    neck = MODELS.build(dict(type='effnet_backbones.EffNetBiFPN', backbone=dict(arch='b0'),
                             width=16, repeats=1, fusion='sum'))
    assert isinstance(neck, EffNetBiFPN) and neck.bifpn.fusion == 'sum'
    assert neck.body.out_indices == (2, 3, 4)
