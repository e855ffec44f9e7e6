"""smp's default ``encoder_weights='imagenet'`` on our encoders: timm's ImageNet checkpoints from
the Hugging Face hub, loaded with the source's padding and BN settings (downloads mocked: the
files are written here from reference models with random weights), and a clear error offline."""
import json

import pytest
import segmentation_models_pytorch as smp
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import save_file

import effnet_backbones.adapters.smp as smp_adapter
from effnet_backbones import EfficientNet
from effnet_backbones.layers import Conv2dSame
from effnet_backbones.weights import WeightsError
from weight_refs import TOL, cached_reference, max_diff


def fake_hub(monkeypatch, tmp_path, state_dict, requests):
    """Serve ``state_dict`` as every repo's model.safetensors; record (repo, file) requests."""
    weights, config = tmp_path / 'model.safetensors', tmp_path / 'config.json'
    save_file({key: value.contiguous() for key, value in state_dict.items()}, str(weights))
    config.write_text(json.dumps({'architecture': 'efficientnet'}))

    def download(repo_id, filename, revision=None, **_):
        requests.append((repo_id, filename))
        return str(weights if filename == 'model.safetensors' else config)

    monkeypatch.setattr('huggingface_hub.hf_hub_download', download)
    monkeypatch.setattr('segmentation_models_pytorch.encoders.hf_hub_download', download)


@pytest.mark.parametrize('source', ['timm', 'timm_tf'])
def test_default_imagenet_weights_give_the_source_models_taps(monkeypatch, tmp_path, source):
    ref = cached_reference(source, 'b0')
    requests = []
    fake_hub(monkeypatch, tmp_path, ref.state_dict, requests)
    # b0's registered weights are a plain timm port; pretend a TF port to test that path too
    monkeypatch.setitem(smp_adapter.IMAGENET_SOURCE, 'b0', source)
    model = smp.Unet('effnet-b0', classes=2).eval()  # encoder_weights='imagenet' by default
    assert ('timm/efficientnet_b0.ra_in1k', 'model.safetensors') in requests
    backbone = model.encoder.backbone
    expected = ('same', 1e-3) if source == 'timm_tf' else ('symmetric', 1e-5)
    assert (backbone.padding, backbone.norm_eps) == expected
    with torch.no_grad():
        features = model.encoder(ref.x)[1:]
    assert max_diff(features, ref.taps) <= TOL
    assert len(backbone.load_report.loaded) > 0 and backbone.load_report.source == source


def test_imagenet_weights_with_one_input_channel(monkeypatch, tmp_path):
    ref = cached_reference('timm', 'b0')
    fake_hub(monkeypatch, tmp_path, ref.state_dict, [])
    model = smp.Unet('effnet-b0', in_channels=1, classes=2).eval()
    with torch.no_grad():
        features = model.encoder(ref.gray)[1:]
    assert max_diff(features, ref.gray_taps) <= TOL  # the stem sums RGB, as timm adapts it


def test_offline_the_error_names_the_file_and_the_way_around(monkeypatch):
    def offline(repo_id, filename, revision=None, **_):
        raise LocalEntryNotFoundError('outgoing traffic has been disabled')

    monkeypatch.setattr('huggingface_hub.hf_hub_download', offline)
    with pytest.raises(WeightsError, match=r'huggingface\.co/timm/efficientnet_b4\.ra2_in1k/resolve/'
                                           r'main/config\.json .*encoder_weights=None'):
        smp.Unet('effnet-b4')


def test_every_variant_has_imagenet_weights_and_smp_names_them():
    for arch, name in smp_adapter.IMAGENET_WEIGHTS.items():
        settings = smp.encoders.encoders[f'effnet-{arch}']['pretrained_settings']
        assert list(settings) == ['imagenet']
        assert settings._settings['imagenet']['repo_id'] == f'timm/{name}'


def test_padding_and_norm_settings_change_in_place_as_if_built_so():
    x = torch.randn(1, 3, 97, 131)
    built = EfficientNet('b0', padding='same', norm_eps=1e-3).eval()
    changed = EfficientNet('b0').eval()
    changed.load_state_dict(built.state_dict())
    changed.set_padding('same')
    changed.set_norm_args(eps=1e-3)
    with torch.no_grad():
        assert max_diff(changed(x), built(x)) == 0.0
    assert [type(m) for m in changed.modules()] == [type(m) for m in built.modules()]
    assert any(isinstance(m, Conv2dSame) for m in changed.modules())
    changed.set_padding('symmetric')
    assert not any(isinstance(m, Conv2dSame) for m in changed.modules())
    symmetric = EfficientNet('b0', norm_eps=1e-3).eval()
    symmetric.load_state_dict(built.state_dict())
    with torch.no_grad():
        assert max_diff(changed(x), symmetric(x)) == 0.0
    with pytest.raises(ValueError, match="padding must be one of"):
        changed.set_padding('valid')


def test_asking_whether_imagenet_weights_exist_fetches_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr('huggingface_hub.hf_hub_download', lambda *a, **k: calls.append(a))
    settings = smp.encoders.encoders['effnet-b0']['pretrained_settings']
    assert 'imagenet' in settings and 'ssl' not in settings and calls == []
