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
