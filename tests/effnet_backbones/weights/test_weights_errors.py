"""Bad input: other variants, other networks, corrupt, truncated or missing files, pickles."""
import logging

import pytest
import timm
import torch
import torchvision

from effnet_backbones import (EfficientNet, create_backbone,
                              load_pretrained, save_backbone)
from effnet_backbones.weights import (WeightsError)
from weight_refs import (LEVELS, TOL, build_reference, cached_reference, max_diff, ours_taps)


def save(tmp_path, name, state):
    path = str(tmp_path / name)
    torch.save(state, path)
    return path


def test_weights_of_another_variant(tmp_path):
    path = save(tmp_path, 'b4.pth', build_reference('torchvision', 'b4').state_dict())
    with pytest.raises(WeightsError) as info:
        create_backbone('efficientnet_b0', pretrained=path)
    message = str(info.value)
    assert path in message and 'looks like efficientnet_b4' in message
    assert 'model is efficientnet_b0' in message
    assert 'stem.conv.weight (features.0.0.weight in the checkpoint): checkpoint [48, 3, 3, 3], ' \
           'model [32, 3, 3, 3]' in message


def test_weights_of_a_deeper_variant_with_the_same_widths(tmp_path):
    # b1 has b0's widths: only block counts tell them apart
    path = save(tmp_path, 'b1.pth', cached_reference('timm', 'b1').state_dict)
    with pytest.raises(WeightsError, match=r'(?s)b1\.pth.*looks like efficientnet_b1.*model is '
                                           r'efficientnet_b0.*blocks\.0\.1\.conv_dw\.weight in the '
                                           r'checkpoint\): not in the model'):
        create_backbone('efficientnet_b0', pretrained=path)


def test_non_efficientnet_checkpoint(tmp_path):
    path = save(tmp_path, 'resnet18.pth', torchvision.models.resnet18().state_dict())
    with pytest.raises(WeightsError, match=r"resnet18\.pth' is not an EfficientNet checkpoint.*"
                                           r"conv1\.weight"):
        create_backbone('efficientnet_b0', pretrained=path)


def test_timm_keys_of_another_family(tmp_path):
    path = save(tmp_path, 'mnv3.pth', timm.create_model('mobilenetv3_large_100').state_dict())
    with pytest.raises(WeightsError, match=r"mnv3\.pth' \(timm keys\) does not look like any "
                                           r"EfficientNet B0-B7 \(stem 16 ch"):
        create_backbone('efficientnet_b0', pretrained=path)


def test_corrupt_file(tmp_path):
    path = tmp_path / 'garbage.pth'
    path.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(WeightsError, match=r"could not read checkpoint '.*garbage\.pth' \(2560 "
                                           r"bytes\): the file is corrupt, truncated"):
        create_backbone('efficientnet_b0', pretrained=str(path))


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_truncated_file(tmp_path, suffix):
    full = str(tmp_path / f'full{suffix}')
    backbone = create_backbone('efficientnet_b0')
    save_backbone(backbone, full)
    data = open(full, 'rb').read()
    path = tmp_path / f'truncated{suffix}'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(WeightsError, match=rf"could not read checkpoint '.*truncated\{suffix}'.*"
                                           r"corrupt, truncated"):
        load_pretrained(backbone, str(path))


def test_missing_file(tmp_path):
    path = str(tmp_path / 'nowhere' / 'b0.pth')
    with pytest.raises(FileNotFoundError, match=r"checkpoint file not found: '.*nowhere/b0\.pth'"):
        create_backbone('efficientnet_b0', pretrained=path)
    with pytest.raises(FileNotFoundError, match=r'b0\.pth'):
        load_pretrained(EfficientNet('b0'), path)


def test_unexpected_extra_keys_are_reported(tmp_path, caplog):
    ref = cached_reference('torchvision', 'b0')
    extra = {'aux_head.weight': torch.zeros(3), 'features.1.0.block.9.0.weight': torch.zeros(3)}
    path = save(tmp_path, 'extra.pth', {**ref.state_dict, **extra})
    with caplog.at_level(logging.WARNING, logger='effnet_backbones.weights'):
        model = create_backbone('efficientnet_b0', pretrained=path, out_indices=LEVELS)
    assert sorted(model.load_report.unexpected) == sorted(extra)
    warning = ' '.join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert 'extra.pth' in warning and 'efficientnet_b0' in warning
    assert 'aux_head.weight' in warning and 'features.1.0.block.9.0.weight' in warning
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


def test_incomplete_checkpoint(tmp_path):
    ref = cached_reference('torchvision', 'b0')
    state = {k: v for k, v in ref.state_dict.items() if k != 'features.3.1.block.1.1.running_var'}
    path = save(tmp_path, 'incomplete.pth', state)
    with pytest.raises(WeightsError, match=r"incomplete\.pth' \(torchvision, efficientnet_b0\) "
                                           r"lacks 1 tensors .*stages\.2\.1\.depthwise\.norm\.running_var"):
        create_backbone('efficientnet_b0', pretrained=path)
    model = EfficientNet('b0')
    report = load_pretrained(model, path, strict=False)
    assert report.missing == ['stages.2.1.depthwise.norm.running_var']


def test_source_that_disagrees_with_the_keys():
    ref = cached_reference('torchvision', 'b0')
    with pytest.raises(WeightsError, match=r"source='timm' but checkpoint '<state dict>' has "
                                           r"torchvision keys"):
        create_backbone('efficientnet_b0', pretrained=ref.state_dict, source='timm')
    with pytest.raises(ValueError, match=r"source must be one of .*'timm_tf'"):
        create_backbone('efficientnet_b0', pretrained=ref.state_dict, source='tensorflow')


def test_rgb_weights_into_a_model_whose_stem_cannot_be_adapted():
    one_channel = create_backbone('efficientnet_b0', in_chans=1).state_dict()
    with pytest.raises(WeightsError, match=r'stem\.conv\.weight: checkpoint \[32, 1, 3, 3\], '
                                           r'model \[32, 3, 3, 3\]'):
        create_backbone('efficientnet_b0', pretrained=one_channel)


class _Opaque:
    pass


def test_pickled_objects_are_not_loaded(tmp_path):
    path = save(tmp_path, 'pickled.pth', {'state_dict': EfficientNet('b0').state_dict(),
                                          'extra': _Opaque()})
    with pytest.raises(WeightsError, match=r"pickled\.pth' holds Python objects besides tensors"):
        create_backbone('efficientnet_b0', pretrained=path)


@pytest.mark.parametrize('pretrained,match', [
    ('not-a-model', r"neither an existing file, a state dict, a URL nor a known hub name"),
    ({'epoch': 3}, r'not a state dict: entries epoch'),
    (torch.zeros(3), r'neither an existing file'),
])
def test_things_that_are_not_checkpoints(pretrained, match):
    with pytest.raises(WeightsError, match=match):
        create_backbone('efficientnet_b0', pretrained=pretrained)


def test_create_backbone_without_name_needs_recognisable_weights():
    with pytest.raises(ValueError, match='needs a name'):
        create_backbone(pretrained=True)
    assert create_backbone().arch == 'b0'
    assert not hasattr(create_backbone(pretrained=False), 'load_report')
