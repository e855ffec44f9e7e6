"""Whole classifiers convert between torchvision, timm and ours with equal logits."""

import pytest
import torch

from effnet_backbones import (EfficientNetClassifier, create_backbone,
                              load_pretrained)
from effnet_backbones.weights import (WeightsError, convert_state_dict)
from weight_refs import (TOL, build_reference, cached_reference)


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


