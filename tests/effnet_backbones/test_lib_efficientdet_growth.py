"""Growing a trained EfficientDet: D0 -> D1's backbone (B0 -> B1) and BiFPN / head width (64 ->
88) transplant exactly; a BiFPN cell D1 adds cannot start as an identity (its nodes end in
SiLU -> separable conv -> BN), so a D1 with its fourth cell computes something else."""
import pytest
import torch

from calibration import calibrate_bn, randomise_affine
from effnet_backbones import create_efficientdet, transplant
from effnet_backbones.transplanting import max_difference


@pytest.fixture(scope='module')
def trained_d0():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 256, 256, dtype=torch.float64)
    model = create_efficientdet('d0', num_classes=3).double()
    randomise_affine(model, 1)  # trained-looking norms: a zeroed weight would show
    calibrate_bn(model, x)
    return model, x


@pytest.mark.parametrize('mode', ['exact', 'net2wider'])
def test_d0_grows_into_a_wider_d1_exactly(trained_d0, mode):
    src, x = trained_d0
    dst = create_efficientdet('d1', num_classes=3, repeats=3).double()  # D1's widths, D0's cells
    report = transplant(src, dst, mode=mode)
    assert any(part.name == 'backbone.bifpn' and part.copied for part in report.parts)
    difference = max_difference(src, dst, x)
    assert difference.relative < 1e-12, difference
    untouched = create_efficientdet('d1', num_classes=3, repeats=3).double()
    assert max_difference(src, untouched, x).relative > 0.1  # the comparison can tell


def test_an_added_bifpn_cell_changes_the_function(trained_d0):
    src, x = trained_d0
    dst = create_efficientdet('d1', num_classes=3).double()  # four cells
    transplant(src, dst)
    assert max_difference(src, dst, x).relative > 0.1
