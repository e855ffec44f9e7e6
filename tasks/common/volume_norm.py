"""Per-volume intensity normalisation, one scheme per channel, as nnU-Net chooses them.

- ``'zscore'`` (MRI and anything not CT): each volume's own mean and standard deviation (over its
  non-zero voxels with ``nonzero=True``, e.g. skull-stripped brains).
- ``'ct'``: clip to the 0.5th..99.5th percentile of the *training set's foreground* voxels, then
  subtract their mean and divide by their standard deviation; the four numbers are measured once
  on the training cases (:func:`measure_ct_statistics`) and stored in the config and checkpoint,
  so evaluation and inference apply the same.
- ``'window'``: a fixed window ``center +- width / 2`` (e.g. a CT soft-tissue window).
- ``'minmax'``: each volume between its own ``percentiles``.
- ``'none'``: the stored values.

``mode='auto'`` (the default) picks 'ct' for channels named CT in ``dataset.json``'s
``channel_names`` and 'zscore' for the rest. As for 2-D images (:mod:`tasks.common.intensity`),
every scheme first maps a volume to [0, 1] (:meth:`ChannelNorm.to_unit`, the range albumentations'
colour steps expect) and standardises after augmentation (:meth:`VolumeNorm.standardize`); for
'zscore' the unit value is ``(z + 5) / 10``, so a z-score is carried exactly (clipped at 5 sigma).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ['VOLUME_NORM_MODES', 'ChannelNorm', 'VolumeNorm', 'build_volume_norm',
           'measure_ct_statistics', 'ZSCORE_CLIP']

VOLUME_NORM_MODES = ('auto', 'zscore', 'ct', 'window', 'minmax', 'none')
#: z-scores are clipped at +- this many standard deviations
ZSCORE_CLIP = 5.0
_CT_NAMES = ('ct',)
_CT_KEYS = ('low', 'high', 'mean', 'std')


@dataclass(frozen=True)
class ChannelNorm:
    """The normalisation of one channel; fields other than ``mode`` belong to one scheme each.

    Args:
        mode: 'zscore', 'ct', 'window', 'minmax' or 'none'.
        nonzero: 'zscore': statistics over the non-zero voxels only (zeros stay the lowest value).
        low, high, mean, std: 'ct': the training foreground's clip range, mean and deviation.
        center, width: 'window'.
        percentiles: 'minmax'.
    """

    mode: str = 'zscore'
    nonzero: bool = False
    low: Optional[float] = None
    high: Optional[float] = None
    mean: Optional[float] = None
    std: Optional[float] = None
    center: Optional[float] = None
    width: Optional[float] = None
    percentiles: Tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        if self.mode not in VOLUME_NORM_MODES[1:]:
            raise ValueError(f'volume normalize mode must be one of {VOLUME_NORM_MODES}, got '
                             f'{self.mode!r}')
        if self.mode == 'window' and (self.center is None or not self.width or self.width <= 0):
            raise ValueError(f"volume normalize mode 'window' needs center and a positive width, "
                             f'got center={self.center!r}, width={self.width!r}')
        if self.mode == 'ct' and self.measured and not (self.high > self.low and self.std > 0):
            raise ValueError(f"volume normalize mode 'ct' needs low < high and std > 0, got "
                             f'{self.low}, {self.high}, std {self.std}')
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f'volume normalize percentiles must satisfy 0 <= low < high <= 100, '
                             f'got {self.percentiles!r}')

    @property
    def measured(self) -> bool:
        """'ct' only: whether the training statistics are filled in."""
        return all(getattr(self, key) is not None for key in _CT_KEYS)

    def to_unit(self, volume: np.ndarray) -> np.ndarray:
        """One channel's voxels -> float32 in [0, 1]."""
        data = volume.astype(np.float32)
        if self.mode == 'none':
            return data
        if self.mode == 'zscore':
            voxels = data[data != 0] if self.nonzero else data
            if voxels.size == 0:
                return np.zeros_like(data)
            mean, std = float(voxels.mean()), float(voxels.std())
            z = (data - mean) / max(std, 1e-8)
            return np.clip((z + ZSCORE_CLIP) / (2 * ZSCORE_CLIP), 0.0, 1.0)
        if self.mode == 'ct':
            if not self.measured:
                raise ValueError("volume normalize mode 'ct' has no training statistics yet: "
                                 'tasks.engine.prepare_train_config measures them on the '
                                 'training cases (or pass low, high, mean, std)')
            low, high = self.low, self.high
        elif self.mode == 'window':
            low, high = self.center - self.width / 2, self.center + self.width / 2
        else:  # minmax
            low, high = (float(v) for v in np.percentile(data, self.percentiles))
        if high <= low:
            return np.zeros_like(data)
        return np.clip((data - np.float32(low)) / np.float32(high - low), 0.0, 1.0)

    def unit_statistics(self) -> Tuple[float, float]:
        """``(mean, std)`` subtracted and divided after augmentation, in unit values."""
        if self.mode == 'zscore':
            return 0.5, 1.0 / (2 * ZSCORE_CLIP)
        if self.mode == 'ct':
            span = self.high - self.low
            return (self.mean - self.low) / span, self.std / span
        return 0.0, 1.0

    def to_config(self) -> Dict[str, Any]:
        """The keys that differ from the defaults, as a config dict."""
        defaults = asdict(ChannelNorm(mode=self.mode))
        values = asdict(self)
        values['percentiles'] = list(values['percentiles'])
        defaults['percentiles'] = list(defaults['percentiles'])
        return {key: value for key, value in values.items()
                if key == 'mode' or value != defaults[key]}


@dataclass(frozen=True)
class VolumeNorm:
    """One :class:`ChannelNorm` per input channel."""

    channels: Tuple[ChannelNorm, ...]

    def to_unit(self, volume: np.ndarray) -> np.ndarray:
        """``(C, X, Y, Z)`` voxels -> float32 in [0, 1], channel by channel."""
        if len(volume) != len(self.channels):
            raise ValueError(f'the volume has {len(volume)} channel(s) but the normalisation '
                             f'{len(self.channels)}')
        return np.stack([norm.to_unit(channel) for norm, channel in zip(self.channels, volume)])

    def standardize(self, image: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` per channel of an ``(H, W, C)`` slice in unit values."""
        mean, std = (np.asarray(values, np.float32)
                     for values in zip(*(norm.unit_statistics() for norm in self.channels)))
        return ((image - mean) / std).astype(np.float32)

    @property
    def needs_statistics(self) -> bool:
        """Whether some 'ct' channel still lacks its training statistics."""
        return any(norm.mode == 'ct' and not norm.measured for norm in self.channels)

    def to_config(self) -> List[Dict[str, Any]]:
        """One config dict per channel, the form saved in configs and checkpoints."""
        return [norm.to_config() for norm in self.channels]


NormConfig = Union[None, Mapping[str, Any], Sequence[Mapping[str, Any]]]


def build_volume_norm(cfg: NormConfig, channel_names: Sequence[str]) -> VolumeNorm:
    """A :class:`VolumeNorm` for ``channel_names`` from a config.

    Args:
        cfg: ``None`` or ``dict(mode='auto')`` (CT channels 'ct', the rest 'zscore'), one dict for
            every channel (``dict(mode='zscore', nonzero=True)``), or a list with one per channel.
        channel_names: the channels' names (``dataset.json`` ``channel_names``), in order.
    """
    names = [str(name) for name in channel_names]
    if cfg is None or isinstance(cfg, Mapping):
        entries = [dict(cfg or {'mode': 'auto'}) for _ in names]
    else:
        entries = [dict(entry) for entry in cfg]
        if len(entries) != len(names):
            raise ValueError(f'normalize lists {len(entries)} channel(s) but the data has '
                             f'{len(names)} ({names})')
    channels = []
    for name, entry in zip(names, entries):
        if entry.get('mode', 'auto') == 'auto':
            entry['mode'] = 'ct' if name.strip().lower() in _CT_NAMES else 'zscore'
        try:
            channels.append(ChannelNorm(**entry))
        except TypeError as err:
            valid = ', '.join(ChannelNorm.__dataclass_fields__)
            raise TypeError(f'normalize={entry!r} (channel {name!r}): {err}; valid keys: '
                            f'{valid}') from None
    return VolumeNorm(tuple(channels))


_SAMPLES_PER_CASE = 100_000


def measure_ct_statistics(volumes: Sequence[np.ndarray], labels: Sequence[np.ndarray]
                          ) -> Dict[str, float]:
    """nnU-Net's CT statistics of one channel: the 0.5th / 99.5th percentile, mean and standard
    deviation of the foreground voxels (label > 0) of the training volumes, sampled (at most
    100,000 voxels a case, seed 0) so large sets stay cheap."""
    rng = np.random.default_rng(0)
    samples = []
    for volume, label in zip(volumes, labels):
        voxels = volume[label > 0].astype(np.float64)
        if len(voxels) > _SAMPLES_PER_CASE:
            voxels = rng.choice(voxels, _SAMPLES_PER_CASE, replace=False)
        samples.append(voxels)
    voxels = np.concatenate(samples) if samples else np.zeros(0)
    if voxels.size == 0:
        raise ValueError("volume normalize mode 'ct' measures the training foreground, but no "
                         'training label has a foreground voxel')
    low, high = (float(v) for v in np.percentile(voxels, (0.5, 99.5)))
    clipped = np.clip(voxels, low, high)
    return dict(low=low, high=max(high, low + 1e-3), mean=float(clipped.mean()),
                std=max(float(clipped.std()), 1e-6))
