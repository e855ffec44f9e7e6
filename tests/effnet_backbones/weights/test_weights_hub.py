"""Hub names, torchvision enums and URLs, with mocked downloads (no network in tests)."""
import urllib.error

import pytest
import timm
import torch
import torchvision

from effnet_backbones import (create_backbone)
from effnet_backbones.weights import (WeightsError, parse_hub_name)
from weight_refs import (LEVELS, TOL, cached_reference, max_diff, ours_taps)


@pytest.mark.parametrize('name,source,expected', [
    (True, 'auto', ('torchvision', 'EfficientNet_B4_Weights.IMAGENET1K_V1', 'torchvision', 'b4')),
    (True, 'timm', ('timm', 'efficientnet_b4', 'timm', 'b4')),
    (True, 'timm_tf', ('timm', 'tf_efficientnet_b4', 'timm_tf', 'b4')),
    ('torchvision/efficientnet_b4', 'auto', ('torchvision', 'EfficientNet_B4_Weights.IMAGENET1K_V1', 'torchvision', 'b4')),
    ('EfficientNet_B4_Weights.DEFAULT', 'auto', ('torchvision', 'EfficientNet_B4_Weights.DEFAULT', 'torchvision', 'b4')),
    ('efficientnet_b4', 'auto', ('torchvision', 'EfficientNet_B4_Weights.IMAGENET1K_V1', 'torchvision', 'b4')),
    ('efficientnet_b4', 'timm', ('timm', 'efficientnet_b4', 'timm', 'b4')),
    ('efficientnet_b4.ra2_in1k', 'auto', ('timm', 'efficientnet_b4.ra2_in1k', 'timm', 'b4')),
    ('timm/tf_efficientnet_b3.ns_jft_in1k', 'auto', ('timm', 'tf_efficientnet_b3.ns_jft_in1k', 'timm_tf', 'b3')),
    ('hf-hub:timm/efficientnet_b3.ra2_in1k', 'auto', ('timm', 'hf-hub:timm/efficientnet_b3.ra2_in1k', 'timm', 'b3')),
    ('https://x.org/tf_efficientnet_b5_ns-6f26d0cf.pth', 'auto', ('url', 'https://x.org/tf_efficientnet_b5_ns-6f26d0cf.pth', 'timm_tf', 'b5')),
    ('https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth', 'auto',
     ('url', 'https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth', 'torchvision', 'b0')),
])
def test_hub_names(name, source, expected):
    hub = parse_hub_name(name, source, arch='b4')
    assert (hub.provider, hub.name, hub.source, hub.arch) == expected


def test_torchvision_weights_enum_is_a_hub_name():
    weights = torchvision.models.EfficientNet_B3_Weights.IMAGENET1K_V1
    assert parse_hub_name(weights).name == 'EfficientNet_B3_Weights.IMAGENET1K_V1'


def test_torchvision_hub_path_with_mocked_download(monkeypatch):
    ref = cached_reference('torchvision', 'b0')
    urls = []

    def fake_download(url, *args, **kwargs):
        urls.append(url)
        return ref.state_dict

    monkeypatch.setattr(torchvision.models._api, 'load_state_dict_from_url', fake_download)
    model = create_backbone('efficientnet_b0', pretrained=True, out_indices=LEVELS)
    assert urls == [torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1.url]
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


def test_timm_hub_path_with_mocked_download(monkeypatch):
    ref = cached_reference('timm_tf', 'b0')
    calls = []

    def fake_create_model(name, pretrained=False, **kwargs):
        calls.append((name, pretrained))
        return ref.model

    monkeypatch.setattr(timm, 'create_model', fake_create_model)
    model = create_backbone('efficientnet_b0', pretrained='timm/tf_efficientnet_b0.ns_jft_in1k',
                            out_indices=LEVELS)
    assert calls == [('tf_efficientnet_b0.ns_jft_in1k', True)]
    assert model.padding == 'same' and model.load_report.source == 'timm_tf'
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


def test_url_path_with_mocked_download(monkeypatch):
    ref = cached_reference('timm', 'b0')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url',
                        lambda url, **kwargs: {'state_dict': ref.state_dict})
    model = create_backbone('efficientnet_b0', pretrained='https://example.org/effb0.pth',
                            out_indices=LEVELS)
    assert model.load_report.source == 'timm'
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


@pytest.mark.parametrize('pretrained,target,attr', [
    (True, torchvision.models._api, 'load_state_dict_from_url'),
    ('timm/efficientnet_b0.ra_in1k', timm, 'create_model'),
    ('https://example.org/tf_efficientnet_b0.pth', torch.hub, 'load_state_dict_from_url'),
])
def test_offline_download_gives_a_clear_error(monkeypatch, pretrained, target, attr):
    def offline(*args, **kwargs):
        raise urllib.error.URLError('[Errno -3] Temporary failure in name resolution')

    monkeypatch.setattr(target, attr, offline)
    with pytest.raises(WeightsError, match=r'could not fetch .*URLError.*download the weights on a '
                                           r'networked machine.*pass its path'):
        create_backbone('efficientnet_b0', pretrained=pretrained)


def test_hub_name_of_another_variant_fails_before_downloading(monkeypatch):
    monkeypatch.setattr(timm, 'create_model', lambda *a, **k: pytest.fail('downloaded'))
    with pytest.raises(WeightsError, match=r'tf_efficientnet_b3.*efficientnet_b3.*model is efficientnet_b0'):
        create_backbone('efficientnet_b0', pretrained='timm/tf_efficientnet_b3.ns_jft_in1k')


