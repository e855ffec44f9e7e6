"""Sources and names: which layout a checkpoint is, settings that follow it, file formats,
what is loaded, skipped or left at init, and stem adaptation."""

import pytest
import timm
import torch
from timm.models._manipulate import adapt_input_conv

from effnet_backbones import (EfficientNet, create_backbone,
                              load_pretrained)
from effnet_backbones.weights import (adapt_stem_weight)
from weight_refs import (LEVELS, TOL, cached_reference, max_diff, ours_taps, reference_taps)


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


