"""Key layouts of torchvision, timm and ours (effnet_backbones.weights' key maps): renaming both
ways, recognising a layout from its names and the variant from its shapes."""
from functools import lru_cache

import pytest
import timm
import torch
import torchvision

from calibration import assert_close_relative, calibrate_bn, randomise_affine
from effnet_backbones import EfficientNet, EfficientNetClassifier
from effnet_backbones.weights import (LAYOUTS, convert_state_dict, from_ours, recognise_layout,
                                      to_ours, variants_of)
from reference import ARCHS

LAYOUT_ARCHS = ('b0', 'b3')  # b0: one block in stage 0; b3: a second, residual, stage-0 block


@lru_cache(maxsize=None)
def meta_state_dicts(arch):
    """{layout: state dict} of the full classifier in each layout, on the meta device."""
    with torch.device('meta'):
        return {
            'effnet_backbones': EfficientNetClassifier(arch).state_dict(),
            'torchvision': getattr(torchvision.models, f'efficientnet_{arch}')().state_dict(),
            'timm': timm.create_model(f'efficientnet_{arch}').state_dict(),
        }


def shapes(state_dict):
    """{key: shape} of a state dict."""
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def test_the_three_layouts():
    assert set(LAYOUTS) == {'torchvision', 'timm', 'effnet_backbones'}


# ----------------------------------------------------------------------------- renaming
@pytest.mark.parametrize('arch', LAYOUT_ARCHS)
@pytest.mark.parametrize('layout', ['torchvision', 'timm'])
def test_ours_renamed_is_exactly_their_keys_and_back(arch, layout):
    states = meta_state_dicts(arch)
    theirs, origin, unmatched = from_ours(states['effnet_backbones'], layout)
    assert unmatched == []
    assert shapes(theirs) == shapes(states[layout])  # every key, with its shape
    assert set(origin.values()) == set(states['effnet_backbones'])
    ours, origin_back, unmatched = to_ours(states[layout], layout)
    assert unmatched == []
    assert shapes(ours) == shapes(states['effnet_backbones'])
    assert all(origin_back[key] == theirs_key for theirs_key, key in origin.items())


@pytest.mark.parametrize('ours_key,layout,their_key', [
    ('stem.conv.weight', 'torchvision', 'features.0.0.weight'),
    ('stem.norm.running_var', 'torchvision', 'features.0.1.running_var'),
    ('stages.0.0.depthwise.conv.weight', 'torchvision', 'features.1.0.block.0.0.weight'),
    ('stages.0.0.se.reduce.weight', 'torchvision', 'features.1.0.block.1.fc1.weight'),
    ('stages.0.0.project.norm.bias', 'torchvision', 'features.1.0.block.2.1.bias'),
    ('stages.1.0.expand.conv.weight', 'torchvision', 'features.2.0.block.0.0.weight'),
    ('stages.1.0.depthwise.norm.weight', 'torchvision', 'features.2.0.block.1.1.weight'),
    ('stages.1.0.se.expand.bias', 'torchvision', 'features.2.0.block.2.fc2.bias'),
    ('stages.6.0.project.conv.weight', 'torchvision', 'features.7.0.block.3.0.weight'),
    ('head.norm.weight', 'torchvision', 'features.8.1.weight'),
    ('classifier.weight', 'torchvision', 'classifier.1.weight'),
    ('stem.norm.weight', 'timm', 'bn1.weight'),
    ('stages.0.0.depthwise.norm.weight', 'timm', 'blocks.0.0.bn1.weight'),
    ('stages.0.0.project.conv.weight', 'timm', 'blocks.0.0.conv_pw.weight'),
    ('stages.0.0.project.norm.weight', 'timm', 'blocks.0.0.bn2.weight'),
    ('stages.1.0.expand.conv.weight', 'timm', 'blocks.1.0.conv_pw.weight'),
    ('stages.1.0.expand.norm.weight', 'timm', 'blocks.1.0.bn1.weight'),
    ('stages.1.0.depthwise.norm.weight', 'timm', 'blocks.1.0.bn2.weight'),
    ('stages.1.0.se.reduce.weight', 'timm', 'blocks.1.0.se.conv_reduce.weight'),
    ('stages.1.0.project.conv.weight', 'timm', 'blocks.1.0.conv_pwl.weight'),
    ('stages.1.0.project.norm.weight', 'timm', 'blocks.1.0.bn3.weight'),
    ('head.norm.weight', 'timm', 'bn2.weight'),
    ('head.conv.weight', 'timm', 'conv_head.weight'),
])
def test_known_key_pairs(ours_key, layout, their_key):
    """Equal-shaped tensors (two norms of one block) could swap unnoticed by key sets alone."""
    ours = meta_state_dicts('b0')['effnet_backbones']
    theirs, origin, _ = from_ours(ours, layout)
    assert origin[their_key] == ours_key and theirs[their_key] is ours[ours_key]
    back, origin_back, _ = to_ours(theirs, layout)  # a block's kind is read from all its keys
    assert origin_back[ours_key] == their_key and back[ours_key] is ours[ours_key]


@pytest.mark.parametrize('layout', ['torchvision', 'timm'])
def test_round_trips_are_the_identity_on_keys_and_tensors(layout):
    ours = EfficientNetClassifier('b0').state_dict()
    theirs, _, _ = from_ours(ours, layout)
    back, _, unmatched = to_ours(theirs, layout)
    assert unmatched == [] and list(back) == list(ours)
    assert all(back[key] is ours[key] for key in ours)  # renamed, never copied or changed


def test_a_backbone_keeps_its_scse_taps_in_our_layout_and_nowhere_else():
    backbone = EfficientNet('b0', out_indices=(1, 2), scse=True).state_dict()
    tap_keys = [key for key in backbone if key.startswith('taps.')]
    assert tap_keys
    ours, _, unmatched = to_ours(backbone, 'effnet_backbones')
    assert unmatched == [] and list(ours) == list(backbone)
    theirs, _, unmatched = from_ours(backbone, 'timm')
    assert unmatched == tap_keys  # timm has nowhere to put them
    assert all(key.startswith(('conv_stem', 'bn1', 'blocks.0.', 'blocks.1.', 'blocks.2.'))
               for key in theirs)


def test_keys_of_no_efficientnet_layer_are_returned_unmatched():
    state = dict(meta_state_dicts('b0')['torchvision'])
    state['aux_head.weight'] = torch.zeros(1)
    _, _, unmatched = to_ours(state, 'torchvision')
    assert unmatched == ['aux_head.weight']


@torch.no_grad()
def test_renamed_weights_compute_timms_logits():
    batch = torch.randn(2, 3, 64, 64)
    ours = calibrate_bn(randomise_affine(EfficientNetClassifier('b0'), seed=5), batch)
    theirs = timm.create_model('efficientnet_b0').eval()
    renamed, _, _ = from_ours(ours.state_dict(), 'timm')
    theirs.load_state_dict(renamed)  # strict
    assert_close_relative(theirs(batch), ours(batch), rtol=1e-5)
    # and torchvision -> timm in one call
    torchvision_keys = convert_state_dict(ours.state_dict(), target='torchvision')
    via_torchvision = convert_state_dict(torchvision_keys, source='torchvision', target='timm')
    assert all(torch.equal(via_torchvision[key], renamed[key]) for key in renamed)


# ----------------------------------------------------------------------------- recognising
@pytest.mark.parametrize('layout', ['torchvision', 'timm', 'effnet_backbones'])
def test_each_layout_is_recognised_from_its_keys(layout):
    assert recognise_layout(list(meta_state_dicts('b0')[layout])) == layout


def test_a_backbone_and_other_networks():
    backbone = EfficientNet('b0', out_indices=(1,), scse=True).state_dict()
    assert recognise_layout(list(backbone)) == 'effnet_backbones'
    with torch.device('meta'):
        resnet = torchvision.models.resnet18().state_dict()
    assert recognise_layout(list(resnet)) is None
    assert recognise_layout([]) is None
    assert recognise_layout(['stem.conv.weight']) is None  # a stem alone is not enough


# ----------------------------------------------------------------------------- variants
@pytest.mark.parametrize('arch', ARCHS)
def test_each_variant_is_identified_from_its_shapes(arch):
    states = meta_state_dicts(arch)
    assert variants_of(states['effnet_backbones']) == [arch]
    for layout in ('torchvision', 'timm'):
        assert variants_of(to_ours(states[layout], layout)[0]) == [arch]
    with torch.device('meta'):
        backbone = EfficientNet(arch, out_indices=(3,)).state_dict()  # no head, 5 stages
    assert variants_of(backbone) == [arch]


def test_a_shallow_backbone_can_fit_several_variants():
    # b1 and b2 agree on stem width and on the blocks and widths of stages 0 and 1
    with torch.device('meta'):
        shallow = EfficientNet('b1', out_indices=(1,)).state_dict()
        deeper = EfficientNet('b1', out_indices=(2,)).state_dict()
    assert variants_of(shallow) == ['b1', 'b2']
    assert variants_of(deeper) == ['b1']


def test_shapes_of_no_variant():
    ours = dict(meta_state_dicts('b0')['effnet_backbones'])
    assert variants_of({k: v for k, v in ours.items() if not k.startswith('stem.')}) == []
    assert variants_of({k: v for k, v in ours.items() if not k.startswith('stages.1.')}) == []
    with torch.device('meta'):
        ours['head.conv.weight'] = torch.empty(1408, 320, 1, 1)  # b2's head width on b0
    assert variants_of(ours) == []
    assert variants_of({}) == []
