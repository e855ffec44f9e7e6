"""Intensity normalisation chosen in the config: fixed scale, per-image min-max or a CT window.

Normalising happens in two steps around augmentation: :meth:`IntensityNorm.to_unit` maps the raw
image (8/16-bit, float, Hounsfield units) to float32 in [0, 1], which is the range albumentations'
colour transforms assume; :meth:`IntensityNorm.standardize` then applies ``(x - mean) / std``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ['IntensityNorm', 'NORM_MODES', 'DATASET_MODE', 'build_intensity_norm',
           'dataset_normalization', 'rgb_statistics_to_gray']

NORM_MODES = ('fixed', 'minmax', 'window')
Floats = Union[float, Sequence[float]]


def _dtype_max(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


@dataclass(frozen=True)
class IntensityNorm:
    """How raw intensities become network inputs.

    Args:
        mode: 'fixed' (divide by ``max_value``), 'minmax' (per image, between the ``percentiles``)
            or 'window' (CT: ``slope * x + intercept`` clipped to ``center +- width / 2``).
        mean: subtracted after augmentation, in [0, 1] units (one value or one per channel).
        std: divides after subtracting ``mean``.
        max_value: 'fixed' only; default is the dtype's maximum (255, 65535) or 1 for floats.
        percentiles: 'minmax' only; (low, high), e.g. (1, 99.8) to ignore outliers.
        center: 'window' only, in the units after slope and intercept (e.g. 40 HU).
        width: 'window' only (e.g. 400 HU).
        slope: 'window' only; raw value to physical unit, as in DICOM RescaleSlope.
        intercept: 'window' only; e.g. -1024 for CT PNGs stored as HU + 1024.
    """

    mode: str = 'fixed'
    mean: Floats = 0.0
    std: Floats = 1.0
    max_value: Optional[float] = None
    percentiles: Tuple[float, float] = (0.0, 100.0)
    center: Optional[float] = None
    width: Optional[float] = None
    slope: float = 1.0
    intercept: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in NORM_MODES:
            raise ValueError(f'normalize mode must be one of {NORM_MODES}, got {self.mode!r}')
        if self.mode == 'window' and (self.center is None or not self.width or self.width <= 0):
            raise ValueError(f"normalize mode 'window' needs center and a positive width, "
                             f'got center={self.center!r}, width={self.width!r}')
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f'normalize percentiles must satisfy 0 <= low < high <= 100, '
                             f'got {self.percentiles!r}')
        if np.any(np.asarray(self.std, np.float32) <= 0):
            raise ValueError(f'normalize std must be positive, got {self.std!r}')

    def to_unit(self, image: np.ndarray) -> np.ndarray:
        """Raw ``(H, W, C)`` image -> float32 in [0, 1] (or beyond for 'fixed' with floats)."""
        data = image.astype(np.float32)
        if self.mode == 'fixed':
            scale = self.max_value if self.max_value is not None else _dtype_max(image.dtype)
            return data / np.float32(scale)
        if self.mode == 'minmax':
            low, high = np.percentile(data, self.percentiles)
        else:
            data = data * np.float32(self.slope) + np.float32(self.intercept)
            low, high = self.center - self.width / 2, self.center + self.width / 2
        if high <= low:  # a constant image carries no contrast
            return np.zeros_like(data)
        return np.clip((data - low) / np.float32(high - low), 0.0, 1.0)

    def standardize(self, image: np.ndarray) -> np.ndarray:
        """Apply ``(x - mean) / std`` to a float ``(H, W, C)`` image."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return ((image - mean) / std).astype(np.float32)


def build_intensity_norm(cfg: Union[None, Dict[str, Any], IntensityNorm]) -> IntensityNorm:
    """An :class:`IntensityNorm` from a config dict such as ``dict(mode='minmax')``."""
    if cfg is None:
        return IntensityNorm()
    if isinstance(cfg, IntensityNorm):
        return cfg
    if dict(cfg).get('mode') == DATASET_MODE:
        raise ValueError("normalize mode 'dataset' is measured on the training set when a run "
                         "starts (tasks.engine.prepare_train_config); a dataset built directly "
                         "needs a concrete mode ('fixed', 'minmax' or 'window')")
    try:
        return IntensityNorm(**dict(cfg))
    except TypeError as err:
        valid = ', '.join(IntensityNorm.__dataclass_fields__)
        raise TypeError(f'normalize={dict(cfg)!r}: {err}; valid keys: {valid}') from None


def rgb_statistics_to_gray(norm: IntensityNorm) -> IntensityNorm:
    """For a 1-channel model: RGB ``mean`` / ``std`` (ImageNet's, say) as the luminance of the
    three, the same weights that turn RGB images gray (:func:`tasks.common.io.to_channels`), so a
    recipe written for RGB runs on gray data unchanged. One-value statistics pass through."""
    from .io import LUMINANCE_WEIGHTS
    changes = {key: float(np.dot(LUMINANCE_WEIGHTS, getattr(norm, key))) for key in ('mean', 'std')
               if np.size(getattr(norm, key)) == 3}
    return replace(norm, **changes) if changes else norm


#: ``normalize=dict(mode='dataset', percentiles=(0.5, 99.5))`` in a config: measured over the
#: training images once (:func:`dataset_normalization`), then used as the 'window' it resolves to
DATASET_MODE = 'dataset'
_SAMPLES_PER_IMAGE = 200_000


def dataset_normalization(images: Sequence[np.ndarray],
                          percentiles: Tuple[float, float] = (0.5, 99.5)) -> Dict[str, Any]:
    """The normalisation a training set asks for, as a concrete ``normalize`` dict.

    Intensities are clipped to the ``percentiles`` of all training pixels (as nnU-Net does for CT)
    and mapped to [0, 1]; ``mean`` and ``std`` per channel are then measured on the mapped
    pixels, so the network sees zero-mean, unit-variance inputs. Returns
    ``dict(mode='window', center, width, mean, std)``, which test and inference apply unchanged.

    Args:
        images: the training images, ``(H, W, C)`` with the model's channel count.
        percentiles: (low, high) clipping percentiles over all pixels.
    """
    if not images:
        raise ValueError('dataset normalisation needs at least one training image')
    rng = np.random.default_rng(0)
    samples = []
    for image in images:
        pixels = image.reshape(-1, image.shape[-1]).astype(np.float64)
        if len(pixels) > _SAMPLES_PER_IMAGE:  # a fixed-size sample keeps big sets cheap
            pixels = pixels[rng.choice(len(pixels), _SAMPLES_PER_IMAGE, replace=False)]
        samples.append(pixels)
    pixels = np.concatenate(samples)
    low, high = (float(value) for value in np.percentile(pixels, percentiles))
    if high <= low:
        high = low + 1.0  # a constant set: any window maps it to one value
    unit = np.clip((pixels - low) / (high - low), 0.0, 1.0)
    std = np.maximum(unit.std(axis=0), 1e-6)
    return dict(mode='window', center=(low + high) / 2, width=high - low,
                mean=[round(float(v), 6) for v in unit.mean(axis=0)],
                std=[round(float(v), 6) for v in std])
