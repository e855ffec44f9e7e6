"""Taps of our backbone loaded with torchvision and timm weights equal the source model's, b0..b7."""


from effnet_backbones import (create_backbone)
from effnet_backbones.weights import (detect_variant, source_settings)
from weight_refs import (LEVELS, TOL, explicit_source, max_diff, ours_taps)


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


