"""tasks.common.intensity: fixed, min-max and window normalisation, then standardising."""
import numpy as np
import pytest

from tasks.common.intensity import IntensityNorm


def test_intensity_modes():
    image = np.array([[0, 50], [100, 200]], np.uint16)[:, :, None]
    assert IntensityNorm('fixed').to_unit(image).max() == pytest.approx(200 / 65535)
    assert IntensityNorm('minmax').to_unit(image)[..., 0].tolist() == [[0, 0.25], [0.5, 1.0]]
    window = IntensityNorm('window', center=100, width=100, intercept=0).to_unit(image)
    assert window[..., 0].tolist() == [[0, 0], [0.5, 1.0]]
    norm = IntensityNorm('minmax', mean=0.5, std=0.25)
    assert norm.standardize(norm.to_unit(image))[..., 0].tolist() == [[-2, -1], [0, 2]]
    with pytest.raises(ValueError, match='window'):
        IntensityNorm('window')


def test_rgb_statistics_become_luminance_for_gray_models():
    from tasks.common.intensity import IntensityNorm, rgb_statistics_to_gray
    from tasks.common.io import LUMINANCE_WEIGHTS
    from tasks.detection.preprocess import NetworkInput
    imagenet = dict(mode='fixed', mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    gray = NetworkInput.build(1, imagenet).normalize
    assert gray.mean == pytest.approx(0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406)
    assert gray.std == pytest.approx(float(LUMINANCE_WEIGHTS @ np.array(imagenet['std'])))
    # one value, or an RGB model, keep what the config says
    assert rgb_statistics_to_gray(IntensityNorm(mean=0.5, std=0.25)) == IntensityNorm(mean=0.5, std=0.25)
    assert NetworkInput.build(3, imagenet).normalize.mean == imagenet['mean']
    with pytest.raises(ValueError, match='in_channels=4'):
        NetworkInput.build(4, imagenet)
