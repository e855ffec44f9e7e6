"""The builders load weights: registry configs, init_cfg (with prefix), pretrained=False; the
model class itself takes none."""

import pytest
import torch
from mmengine.registry import MODELS as ROOT_MODELS

import effnet_backbones
from effnet_backbones.weights import (WeightsError)
from weight_refs import (LEVELS, TOL, cached_reference, max_diff, ours_taps)


def test_registry_builds_with_pretrained(tmp_path):
    ref = cached_reference('torchvision', 'b0')
    path = str(tmp_path / 'b0.pth')
    torch.save(ref.state_dict, path)
    model = ROOT_MODELS.build(dict(type='effnet_backbones.EfficientNet', arch='b0',
                                   out_indices=LEVELS, pretrained=path))
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


def test_init_cfg_pretrained_with_source(tmp_path):
    ref = cached_reference('timm_tf', 'b0')
    path = str(tmp_path / 'b0_tf.safetensors')
    from safetensors.torch import save_file
    save_file(ref.state_dict, path)
    model = effnet_backbones.MODELS.build(dict(
        type='EfficientNet', arch='b0', out_indices=LEVELS,
        init_cfg=dict(type='Pretrained', checkpoint=path, source='timm_tf')))
    assert model.padding == 'same' and model.norm_eps == 1e-3
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


def test_init_cfg_prefix_loads_the_backbone_out_of_a_whole_model_checkpoint(tmp_path):
    ref = cached_reference('torchvision', 'b0')
    whole = {f'backbone.{key}': value for key, value in ref.state_dict.items()}
    whole['decode_head.conv.weight'] = torch.zeros(2, 8, 1, 1)
    path = str(tmp_path / 'segmentor.pth')
    torch.save({'state_dict': whole}, path)
    model = ROOT_MODELS.build(dict(
        type='effnet_backbones.EfficientNet', arch='b0', out_indices=LEVELS,
        init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.')))
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL
    with pytest.raises(WeightsError, match=r"segmentor\.pth: no key starts with prefix 'neck\.'"):
        effnet_backbones.build_backbone('b0', init_cfg=dict(type='Pretrained', checkpoint=path,
                                                            prefix='neck.'))


def test_pretrained_false_means_no_weights():
    model = effnet_backbones.build_backbone('b0', pretrained=False)
    assert isinstance(model, effnet_backbones.EfficientNet) and not hasattr(model, 'load_report')


def test_the_model_class_takes_no_weights():
    # weights are loaded by the builders, which pick the settings first; the class stays plain
    for keyword in ('pretrained', 'source', 'init_cfg'):
        with pytest.raises(TypeError, match=keyword):
            effnet_backbones.EfficientNet('b0', **{keyword: None})


