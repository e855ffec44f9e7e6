"""effnet_backbones.factory: create_backbone / list_backbones: names, options, our saved format."""
import pytest
import torch
import torch.nn as nn

from calibration import assert_close_relative, calibrate_bn
from effnet_backbones import EfficientNet, create_backbone, list_backbones, save_backbone
from effnet_backbones.layers import SCSE, Conv2dSame
from reference import ARCHS, REFERENCE

NAMES = [f'efficientnet_{arch}' for arch in ARCHS]


def test_list_backbones_names_every_variant_in_order():
    assert list_backbones() == NAMES


@pytest.mark.parametrize('name', NAMES)
def test_every_listed_name_builds_its_variant(name):
    with torch.device('meta'):
        model = create_backbone(name, out_indices=(0, 1, 2, 3, 4))
    arch = name.rsplit('_', 1)[1]
    assert isinstance(model, EfficientNet) and model.arch == arch
    assert model.out_channels == list(REFERENCE[arch][6])


@pytest.mark.parametrize('alias', ['b4', 'B4', 'efficientnet-b4', 'efficientnet_b4', 'effnet-b4',
                                   'EfficientNet_B4'])
def test_aliases(alias):
    with torch.device('meta'):
        assert create_backbone(alias, out_indices=(1,)).arch == 'b4'


def test_no_name_and_no_weights_gives_b0_and_false_means_no_weights():
    model = create_backbone(out_indices=(1,))
    assert model.arch == 'b0' and model.out_channels == [24]
    torch.manual_seed(1)
    without = create_backbone('b0', pretrained=False, out_indices=(1,)).state_dict()
    torch.manual_seed(1)
    plain = create_backbone('b0', out_indices=(1,)).state_dict()
    assert all(torch.equal(without[key], plain[key]) for key in plain)  # initialisation only


@pytest.mark.parametrize('name', ['efficientnet_b8', 'resnet50', 'b', ''])
def test_unknown_names_are_named_with_the_valid_ones(name):
    with pytest.raises(ValueError, match=rf"unknown backbone '{name}'; valid: "
                                         + ', '.join(NAMES)):
        create_backbone(name)


def test_other_errors_name_what_was_wrong():
    with pytest.raises(TypeError, match=r"create_backbone\('efficientnet_b0'\) got arch='b2'; "
                                        r"the name sets the arch"):
        create_backbone('efficientnet_b0', arch='b2')
    with pytest.raises(ValueError, match=r'pretrained=True\) needs a name'):
        create_backbone(pretrained=True)
    with pytest.raises(ValueError, match=r'out_indices entry 7 is not valid'):
        create_backbone('b0', out_indices=(1, 7))
    with pytest.raises(TypeError, match='out_index'):
        create_backbone('b0', out_index=(1,))


def test_options_pass_through_to_the_backbone():
    model = create_backbone('efficientnet_b1', out_indices=(0, 2, 4), scse=(False, True, False),
                            scse_reduction=8, in_chans=5, drop_path_rate=0.3, norm_layer='gn',
                            act_layer='relu6', padding='same', output_stride=16,
                            frozen_stages=1, norm_eval=True, norm_eps=1e-3)
    assert model.out_indices == (0, 2, 4) and model.out_channels == [16, 40, 320]
    assert model.strides == [2, 8, 16]
    assert [type(tap) for tap in model.taps] == [nn.Identity, SCSE, nn.Identity]
    assert model.taps[1].channel_gate[1].out_channels == 40 // 8
    assert model.stem.conv.weight.shape[1] == 5 and isinstance(model.stem.conv, Conv2dSame)
    assert isinstance(model.stem.norm, nn.GroupNorm) and model.stem.norm.eps == 1e-3
    assert isinstance(model.stem.act, nn.ReLU6)
    assert model.stages[-1][-1].drop_path.p == pytest.approx(0.3 * 22 / 23)
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert model.stages[1][0].depthwise.conv.dilation == (1, 1)
    assert model.stages[6][0].depthwise.conv.dilation == (2, 2)
    features = model.train()(torch.randn(2, 5, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [(16, 32, 32), (40, 8, 8), (320, 4, 4)]


# ----------------------------------------------------------------------------- our own format
@pytest.fixture
def saved_b0(tmp_path):
    """(a calibrated B0 with scSE on levels 2 and 4 saved to a file, its batch, the file)."""
    torch.manual_seed(3)
    batch = torch.randn(2, 3, 64, 64)
    model = create_backbone('b0', out_indices=(1, 2, 3, 4), scse=(False, True, False, True),
                            drop_path_rate=0.1, padding='same', norm_eps=1e-3)
    calibrate_bn(model, batch)
    path = tmp_path / 'b0_scse.pth'
    save_backbone(model, str(path))
    return model, batch, str(path)


@torch.no_grad()
def test_a_saved_backbone_rebuilds_with_its_options_and_outputs(saved_b0):
    original, batch, path = saved_b0
    rebuilt = create_backbone(pretrained=path).eval()
    assert rebuilt.config == original.config
    assert (rebuilt.arch, rebuilt.padding, rebuilt.norm_eps, rebuilt.scse) == \
        ('b0', 'same', 1e-3, (False, True, False, True))
    assert_close_relative(rebuilt(batch), original(batch), rtol=0)
    same_name = create_backbone('efficientnet_b0', pretrained=path).eval()
    assert_close_relative(same_name(batch), original(batch), rtol=0)


@torch.no_grad()
def test_given_options_override_saved_ones_and_scse_flags_follow_their_levels(saved_b0):
    original, batch, path = saved_b0
    rebuilt = create_backbone(pretrained=path, out_indices=(1, 2), norm_eval=True)
    assert rebuilt.norm_eval and rebuilt.padding == 'same'
    assert rebuilt.scse == (False, True)  # level 1 had none, level 2 had scSE
    assert_close_relative(rebuilt.eval()(batch), original(batch)[:2], rtol=0)
    explicit = create_backbone(pretrained=path, out_indices=(1, 2), scse=False)
    assert explicit.scse == (False, False)


@torch.no_grad()
def test_saved_scse_weights_follow_their_level(saved_b0):
    original, batch, path = saved_b0
    rebuilt = create_backbone(pretrained=path, out_indices=(2, 4)).eval()
    assert rebuilt.scse == (True, True)
    expected = original(batch)
    assert_close_relative(rebuilt(batch), [expected[1], expected[3]], rtol=0)


@torch.no_grad()
def test_saved_scse_weights_are_not_silently_dropped(tmp_path):
    torch.manual_seed(4)
    batch = torch.randn(2, 3, 64, 64)
    original = calibrate_bn(create_backbone('b0', out_indices=(2, 3), scse=(False, True)), batch)
    path = str(tmp_path / 'b0_level3_scse.pth')
    save_backbone(original, path)
    rebuilt = create_backbone(pretrained=path, out_indices=(3,)).eval()
    assert rebuilt.scse == (True,)
    assert_close_relative(rebuilt(batch), original(batch)[1:], rtol=1e-6)
