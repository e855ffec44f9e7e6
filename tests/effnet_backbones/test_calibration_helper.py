"""tests/calibration.py: calibrated BN statistics keep every tap of order one, and the relative
comparison catches what an absolute tolerance on tiny tensors would not."""
import pytest
import torch
import torch.nn as nn

from calibration import assert_close_relative, calibrate_bn, relative_error
from effnet_backbones import EfficientNet

ALL_LEVELS = (0, 1, 2, 3, 4)


@pytest.fixture(scope='module')
def calibrated_b0():
    """(B0 backbone with all five taps calibrated on ``batch``, batch, its eval-mode taps)."""
    torch.manual_seed(0)
    model = EfficientNet('b0', out_indices=ALL_LEVELS, drop_path_rate=0.2)
    batch = torch.randn(2, 3, 64, 64)
    calibrate_bn(model, batch)
    with torch.no_grad():
        taps = model(batch)
    return model, batch, taps


def test_every_tap_is_of_order_one_in_eval_mode_after_calibration(calibrated_b0):
    model, _, taps = calibrated_b0
    assert not model.training and not any(m.training for m in model.modules())
    stds = [tap.std().item() for tap in taps]
    assert len(stds) == 5 and min(stds) > 0.1, stds


def test_calibration_restores_momentum_and_measures_the_batch(calibrated_b0):
    model, batch, _ = calibrated_b0
    assert {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}
    # the stem norm's running mean is the mean of the stem conv's output on the batch
    with torch.no_grad():
        stem_out = model.stem.conv(batch)
    torch.testing.assert_close(model.stem.norm.running_mean, stem_out.mean((0, 2, 3)),
                               rtol=1e-4, atol=1e-5)


def test_calibration_is_deterministic_with_drop_path(calibrated_b0):
    model, batch, taps = calibrated_b0
    torch.manual_seed(123)  # drop path stays in eval mode: the random state does not matter
    calibrate_bn(model, batch, steps=3)
    with torch.no_grad():
        again = model(batch)
    assert_close_relative(again, taps, rtol=1e-4)  # float rounding of the averages only


def test_zeroing_one_tap_is_detected(calibrated_b0):
    _, _, taps = calibrated_b0
    assert_close_relative([t.clone() for t in taps], taps, rtol=1e-6)
    for index in range(len(taps)):
        broken = [t.clone() for t in taps]
        broken[index].zero_()
        with pytest.raises(AssertionError, match=rf'tensor {index}: relative error 1 > 1e-05'):
            assert_close_relative(broken, taps, rtol=1e-5)


def test_a_small_relative_perturbation_is_detected_where_an_absolute_one_is_not():
    expected = torch.full((4, 4), 1e-9)
    wrong = expected * 2  # 100% off, yet within any absolute tolerance
    torch.testing.assert_close(wrong, expected)
    assert relative_error(wrong, expected) == pytest.approx(1.0)
    with pytest.raises(AssertionError, match=r'tensor 0: relative error 1'):
        assert_close_relative(wrong, expected, rtol=1e-3)


def test_relative_error_edge_cases():
    zeros = torch.zeros(3)
    assert relative_error(zeros, zeros) == 0.0
    assert relative_error(torch.ones(3), zeros) == float('inf')
    with pytest.raises(AssertionError, match=r'tensor 1: shape \(2,\), expected \(3,\)'):
        assert_close_relative([zeros, torch.zeros(2)], [zeros, zeros])
    with pytest.raises(AssertionError, match='1 tensors given, 2 expected'):
        assert_close_relative([zeros], [zeros, zeros])
    with pytest.raises(ValueError, match='steps must be at least 1, got 0'):
        calibrate_bn(nn.BatchNorm2d(3), torch.zeros(2, 3, 4, 4), steps=0)
