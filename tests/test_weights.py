"""Pretrained weights: exact parity with torchvision and timm, our own format, registry, bad input.

Reference models are built with random weights (no download). Their BN layers get random affine
parameters and running statistics measured on a batch, so that every tensor matters: a key loaded
into the wrong place, a wrong BN eps or a wrong padding shows as a difference in the taps.
No test touches the network: hub downloads are replaced by monkeypatched functions.
"""
import logging
import urllib.error
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List

import pytest
import timm
import torch
import torch.nn as nn
import torchvision
from mmengine.registry import MODELS as ROOT_MODELS
from timm.models._manipulate import adapt_input_conv

import effnet_backbones
from effnet_backbones import (EfficientNet, EfficientNetClassifier, create_backbone,
                              load_pretrained, save_backbone)
from effnet_backbones.weights import (WeightsError, adapt_stem_weight, convert_state_dict,
                                      detect_variant, parse_hub_name, source_settings)
from reference import ARCHS

SOURCES = ('torchvision', 'timm', 'timm_tf')
LEVELS = (0, 1, 2, 3, 4)
TORCHVISION_TAPS = (1, 2, 3, 5, 7)  # features[i] giving levels 0..4 (issue: [2], [3], [5], [7])
TOL = 1e-5
SMALL_INPUT_ARCHS = ('b5', 'b6', 'b7')


def input_size(arch):
    # odd, non-square sides make TF 'same' padding asymmetric, so a padding mistake shows
    return (65, 64) if arch in SMALL_INPUT_ARCHS else (81, 98)


def max_diff(ours: List[torch.Tensor], theirs: List[torch.Tensor]) -> float:
    assert [a.shape for a in ours] == [b.shape for b in theirs]
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs))


# ----------------------------------------------------------------------------- reference models
def build_reference(source: str, arch: str) -> nn.Module:
    """A randomly initialised torchvision / timm classifier (never downloads)."""
    if source == 'torchvision':
        # no stochastic depth, so that the calibration pass in train mode matches eval mode
        return torchvision.models.get_model(f'efficientnet_{arch}', weights=None,
                                            stochastic_depth_prob=0.0)
    prefix = 'tf_' if source == 'timm_tf' else ''
    return timm.create_model(f'{prefix}efficientnet_{arch}', pretrained=False)


@torch.no_grad()
def randomise(model: nn.Module, seed: int, batch: torch.Tensor) -> nn.Module:
    """Random BN affine and conv/linear biases, then BN statistics measured on ``batch``.

    Statistics measured on the very inputs the tests use keep every tap of order 1 (a random
    network with mismatched statistics blows up to 1e6 and amplifies rounding past 1e-5).
    """
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.uniform_(0.5, 1.5, generator=gen)
            module.bias.normal_(0.0, 0.2, generator=gen)
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.normal_(0.0, 0.2, generator=gen)
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the statistics to its own
    model.train()
    model(batch)
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
        bn.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
    return model.eval()


def stem_module(source: str) -> str:
    return 'features.0.0' if source == 'torchvision' else 'conv_stem'


def tap_modules(source: str, model: nn.Module) -> List[str]:
    """Modules giving levels 0..4: torchvision ``features[1,2,3,5,7]``; for timm the modules its
    ``features_only`` wrapper returns (``feature_info``: blocks 0, 1, 2, 4, 6)."""
    if source == 'torchvision':
        return [f'features.{i}' for i in TORCHVISION_TAPS]
    return [info['module'] for info in model.feature_info]


@torch.no_grad()
def reference_taps(source: str, model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """The source model's taps at levels 0..4 for ``x``.

    Inputs with other than 3 channels run with the stem adapted by timm's ``adapt_input_conv``
    (what timm does for ``in_chans`` when it loads pretrained weights).
    """
    conv = model.get_submodule(stem_module(source))
    rgb_weight = conv.weight
    conv.weight = nn.Parameter(adapt_input_conv(x.shape[1], rgb_weight.detach()))
    taps: List[torch.Tensor] = []
    hooks = [model.get_submodule(name).register_forward_hook(lambda m, i, o: taps.append(o))
             for name in tap_modules(source, model)]
    try:
        model(x)
    finally:
        conv.weight = rgb_weight
        for hook in hooks:
            hook.remove()
    return taps


@dataclass
class Reference:
    source: str
    arch: str
    model: nn.Module
    state_dict: Dict[str, torch.Tensor]
    x: torch.Tensor
    taps: List[torch.Tensor]
    gray: torch.Tensor
    gray_taps: List[torch.Tensor]


def make_reference(source: str, arch: str) -> Reference:
    seed = ARCHS.index(arch) * 10 + SOURCES.index(source)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, *input_size(arch), generator=gen)
    gray = torch.randn(1, 1, *input_size(arch), generator=gen)
    other = torch.randn(1, 3, *input_size(arch), generator=gen)
    batch = torch.cat([x, gray.repeat(1, 3, 1, 1), other])
    model = randomise(build_reference(source, arch), seed, batch)
    return Reference(source, arch, model, model.state_dict(), x, reference_taps(source, model, x),
                     gray, reference_taps(source, model, gray))


@pytest.fixture(scope='module', params=[(s, a) for a in ARCHS for s in SOURCES],
                ids=lambda p: f'{p[1]}-{p[0]}')
def reference(request) -> Reference:
    # module scope + params: pytest groups the tests by reference, one model alive at a time
    return make_reference(*request.param)


@lru_cache(maxsize=None)
def cached_reference(source: str, arch: str) -> Reference:
    """References for the single-variant tests below (b0-b4 only, to keep memory small)."""
    return make_reference(source, arch)


def ours_taps(model: EfficientNet, x: torch.Tensor) -> List[torch.Tensor]:
    with torch.no_grad():
        return model.eval()(x)


def explicit_source(source: str) -> str:
    # timm's tf_ state dicts have the same keys as plain timm: 'auto' cannot tell them apart
    return 'timm_tf' if source == 'timm_tf' else 'auto'


# ----------------------------------------------------------------------------- parity, b0..b7
def test_taps_equal_the_source_model(reference):
    ref = reference
    model = create_backbone(f'efficientnet_{ref.arch}', pretrained=ref.state_dict,
                            source=explicit_source(ref.source), out_indices=LEVELS)
    settings = source_settings(ref.source, ref.arch)
    assert (model.padding, model.norm_eps, model.norm_momentum) == (
        settings['padding'], settings['norm_eps'], settings['norm_momentum'])
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL

    report = model.load_report
    assert (report.source, report.variant) == (ref.source, ref.arch)
    assert not report.missing and not report.unexpected and not report.notes
    assert sorted(report.loaded) == sorted(model.state_dict())
    assert {key.split('.')[0] for key in report.skipped} == {'head', 'classifier'}


def test_taps_equal_the_source_model_for_gray_input(reference):
    ref = reference
    model = create_backbone(f'efficientnet_{ref.arch}', pretrained=ref.state_dict,
                            source=explicit_source(ref.source), out_indices=LEVELS, in_chans=1)
    assert model.stem.conv.weight.shape[1] == 1
    assert model.load_report.adapted == ['stem.conv.weight (3 -> 1 input channels)']
    assert max_diff(ours_taps(model, ref.gray), ref.gray_taps) <= TOL


def test_variant_is_detected_from_shapes(reference):
    assert detect_variant(reference.state_dict, explicit_source(reference.source)) == reference.arch


# ----------------------------------------------------------------------------- sources and names
def test_default_out_indices_are_the_issue_tap_modules():
    ref = cached_reference('torchvision', 'b0')
    model = create_backbone('efficientnet_b0', pretrained=ref.state_dict)
    assert model.out_indices == (1, 2, 3, 4)
    assert max_diff(ours_taps(model, ref.x), ref.taps[1:]) <= TOL  # features[2], [3], [5], [7]


@torch.no_grad()
def test_timm_tap_modules_are_what_features_only_returns():
    ref = cached_reference('timm_tf', 'b0')
    features = timm.create_model('tf_efficientnet_b0', features_only=True, out_indices=LEVELS)
    assert not features.load_state_dict(ref.state_dict, strict=False).missing_keys
    assert max_diff(features.eval()(ref.x), ref.taps) == 0.0


def test_tf_checkpoint_read_as_plain_timm_differs_and_says_so():
    ref = cached_reference('timm_tf', 'b0')
    model = create_backbone('efficientnet_b0', pretrained=ref.state_dict, out_indices=LEVELS)
    assert model.load_report.source == 'timm' and model.padding == 'symmetric'
    assert max_diff(ours_taps(model, ref.x), ref.taps) > 1e-3  # proves padding/eps matter


def test_tf_in_file_name_selects_timm_tf(tmp_path):
    ref = cached_reference('timm_tf', 'b0')
    path = tmp_path / 'tf_efficientnet_b0.ns_jft_in1k.pth'
    torch.save(ref.state_dict, path)
    model = create_backbone('efficientnet_b0', pretrained=str(path), out_indices=LEVELS)
    assert model.load_report.source == 'timm_tf' and model.padding == 'same'
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


def test_user_settings_win_over_the_source_and_are_noted():
    ref = cached_reference('timm_tf', 'b0')
    model = create_backbone('efficientnet_b0', pretrained=ref.state_dict, source='timm_tf',
                            padding='symmetric')
    assert model.padding == 'symmetric' and model.norm_eps == 1e-3
    assert any('padding' in note for note in model.load_report.notes)


@pytest.mark.parametrize('suffix,wrap', [('.pth', 'plain'), ('.pt', 'state_dict+module'),
                                         ('.bin', 'model'), ('.safetensors', 'plain')])
def test_file_formats_and_wrappers(tmp_path, suffix, wrap):
    ref = cached_reference('timm', 'b0')
    state = dict(ref.state_dict)
    path = str(tmp_path / f'weights{suffix}')
    if suffix == '.safetensors':
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        if 'module' in wrap:
            state = {f'module.{k}': v for k, v in state.items()}
        if wrap.startswith('state_dict'):
            state = {'state_dict': state, 'epoch': 3, 'arch': 'efficientnet_b0'}
        elif wrap == 'model':
            state = {'model': state}
        torch.save(state, path)
    model = create_backbone('efficientnet_b0', pretrained=path, out_indices=LEVELS)
    assert model.load_report.checkpoint == path and model.load_report.source == 'timm'
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


def test_load_pretrained_into_an_existing_model_and_module_input():
    ref = cached_reference('torchvision', 'b1')
    model = EfficientNet('b1', out_indices=LEVELS)
    report = load_pretrained(model, ref.model)  # an nn.Module works too
    assert report.variant == 'b1' and model.load_report is report
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


def test_only_built_stages_are_loaded_the_rest_is_reported_as_skipped():
    ref = cached_reference('torchvision', 'b0')
    model = create_backbone('efficientnet_b0', pretrained=ref.state_dict, out_indices=(1, 2))
    report = model.load_report
    parts = {'.'.join(key.split('.')[:2]) if key.startswith('stages') else key.split('.')[0]
             for key in report.skipped}
    assert parts == {'stages.3', 'stages.4', 'stages.5', 'stages.6', 'head', 'classifier'}
    assert len(report.loaded) + len(report.skipped) == len(ref.state_dict)
    assert max_diff(ours_taps(model, ref.x), ref.taps[1:3]) <= TOL


def test_scse_taps_stay_at_init_and_are_reported_as_missing():
    ref = cached_reference('timm', 'b0')
    torch.manual_seed(1)
    model = create_backbone('efficientnet_b0', pretrained=ref.state_dict, scse=True)
    torch.manual_seed(1)
    fresh = create_backbone('efficientnet_b0', scse=True)
    taps = [key for key in model.state_dict() if key.startswith('taps.')]
    assert taps and sorted(model.load_report.missing) == sorted(taps)
    for key in taps:
        assert torch.equal(model.state_dict()[key], fresh.state_dict()[key])


def test_stem_adaptation_matches_timm():
    weight = torch.randn(32, 3, 3, 3)
    for in_chans in (1, 2, 4, 5, 6, 8):
        assert torch.allclose(adapt_stem_weight(weight, in_chans), adapt_input_conv(in_chans, weight))
    assert adapt_stem_weight(weight, 3) is weight


def test_adapted_stems_keep_the_meaning_of_the_input():
    # gray: as if the gray image were given as RGB; 6 channels: a doubled RGB image as the image.
    # Summation order differs from the RGB model, so compare with a rounding-level tolerance.
    ref = cached_reference('torchvision', 'b0')
    gray = create_backbone('efficientnet_b0', pretrained=ref.state_dict, out_indices=LEVELS,
                           in_chans=1)
    rgb = create_backbone('efficientnet_b0', pretrained=ref.state_dict, out_indices=LEVELS)
    expected = ours_taps(rgb, ref.gray.repeat(1, 3, 1, 1))
    assert max_diff(ours_taps(gray, ref.gray), expected) <= 1e-3
    six = create_backbone('efficientnet_b0', pretrained=ref.state_dict, out_indices=LEVELS,
                          in_chans=6)
    assert max_diff(ours_taps(six, torch.cat([ref.x, ref.x], 1)), ref.taps) <= 1e-3
    assert max_diff(ours_taps(six, torch.cat([ref.x, ref.x], 1)),
                    reference_taps('torchvision', ref.model, torch.cat([ref.x, ref.x], 1))) <= TOL


# ----------------------------------------------------------------------------- our own format
@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_own_format_rebuilds_the_backbone_by_itself(tmp_path, suffix):
    options = dict(out_indices=(2, 3, 4), scse=(False, True, True), in_chans=4, padding='same',
                   norm_eps=1e-3, drop_path_rate=0.1)
    original = create_backbone('efficientnet_b4', **options).eval()
    with torch.no_grad():  # make BN statistics and taps non-trivial
        for name, value in original.state_dict().items():
            if value.is_floating_point():
                value.add_(torch.rand_like(value) * 0.1)
    path = str(tmp_path / f'my_b4{suffix}')
    save_backbone(original, path)

    rebuilt = create_backbone(pretrained=path)
    assert rebuilt.arch == 'b4' and rebuilt.config == original.config
    assert rebuilt.load_report.source == 'effnet_backbones' and not rebuilt.load_report.missing
    x = torch.randn(1, 4, 67, 70)
    assert max_diff(ours_taps(rebuilt, x), ours_taps(original, x)) == 0.0
    # options given now win over saved ones; unbuilt taps are skipped
    shallow = create_backbone(pretrained=path, out_indices=(2, 3))
    assert shallow.out_indices == (2, 3) and shallow.padding == 'same'
    assert any(key.startswith('stages.6') for key in shallow.load_report.skipped)


def test_own_format_name_must_agree(tmp_path):
    path = str(tmp_path / 'my_b2.pth')
    save_backbone(create_backbone('efficientnet_b2', out_indices=(1, 2)), path)
    with pytest.raises(ValueError, match=r"efficientnet_b0.*my_b2\.pth.*efficientnet_b2"):
        create_backbone('efficientnet_b0', pretrained=path)
    assert create_backbone('efficientnet_b2', pretrained=path).arch == 'b2'


def test_own_format_file_is_safe_to_load(tmp_path):
    path = str(tmp_path / 'b0.pth')
    save_backbone(create_backbone('efficientnet_b0'), path)
    saved = torch.load(path, weights_only=True)
    assert saved['format'] == 'effnet_backbones' and saved['config']['arch'] == 'b0'


def test_name_is_detected_from_torchvision_weights(tmp_path):
    ref = cached_reference('torchvision', 'b2')
    path = str(tmp_path / 'efficientnet_b2_rwightman.pth')
    torch.save(ref.state_dict, path)
    model = create_backbone(pretrained=path, out_indices=LEVELS)
    assert model.arch == 'b2'
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


# ----------------------------------------------------------------------------- registry, init_cfg
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


# ----------------------------------------------------------------------------- full classifier
@torch.no_grad()
def test_classifier_converts_both_ways_with_equal_logits():
    ref = cached_reference('torchvision', 'b0')
    x = ref.x
    ours = EfficientNetClassifier('b0').eval()
    ours.load_state_dict(convert_state_dict(ref.state_dict, 'torchvision'))  # strict
    expected = ref.model(x)
    assert (ours(x) - expected).abs().max() <= TOL

    timm_model = build_reference('timm', 'b0').eval()
    timm_model.load_state_dict(convert_state_dict(ours.state_dict(), target='timm'))  # strict
    assert (timm_model(x) - expected).abs().max() <= TOL
    back = convert_state_dict(timm_model.state_dict(), 'timm', target='torchvision')
    assert back.keys() == ref.state_dict.keys()
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict.items())


@torch.no_grad()
def test_classifier_from_a_tf_port_with_load_pretrained():
    ref = cached_reference('timm_tf', 'b0')
    ours = EfficientNetClassifier('b0', padding='same', norm_eps=1e-3).eval()
    report = load_pretrained(ours, ref.state_dict, source='timm_tf')
    assert not report.skipped and not report.missing and not report.unexpected
    assert (ours(ref.x) - ref.model(ref.x)).abs().max() <= TOL


def test_scse_taps_cannot_be_exported_to_torchvision():
    with pytest.raises(WeightsError, match=r'taps\.0'):
        convert_state_dict(create_backbone('efficientnet_b0', scse=True).state_dict(),
                           target='torchvision')


# ----------------------------------------------------------------------------- hub (mocked network)
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


# ----------------------------------------------------------------------------- bad input
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
