"""Volume configs that follow their data: classes and channels from ``dataset.json`` (or the
training checkpoint), and the per-channel normalisation made concrete (CT statistics measured on
the training cases once, when training starts). Part of the segmentation task's data resolver."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from ..common.io import DataError
from ..common.volume_norm import build_volume_norm, measure_ct_statistics
from ..engine.data import datasets_of, follow_the_data
from .volume_spacing import TARGET_SPACING_RULES, cases_off_target, median_in_plane_spacing
from .volumes import (VolumeCase, VolumeDescription, case_spacings, is_volume_root, load_case,
                      read_volume_description, select_cases)

__all__ = ['VOLUME_DATASET_TYPE', 'VOLUME_METRIC_TYPE', 'resolve_volume_data',
           'resolve_volume_normalization', 'resolve_volume_spacing', 'switch_to_volumes']

VOLUME_DATASET_TYPE = 'effnet_backbones.VolumeSliceDataset'
VOLUME_METRIC_TYPE = 'effnet_backbones.VolumeSegMetric'
_FOLDER_TYPES = ('effnet_backbones.SegFolderDataset', 'SegFolderDataset')
_FOLDER_METRICS = ('effnet_backbones.SegMetric', 'SegMetric')
#: what a folder dataset's config keeps when it becomes a volume dataset
_KEPT_KEYS = ('data_root', 'split', 'classes', 'in_channels', 'crop_size', 'pipeline',
              'ignore_index')
#: nnU-Net's share of training patches forced to hold foreground (when the folder dataset sets none)
FOREGROUND_RATIO = 0.33


def switch_to_volumes(cfg: Config) -> bool:
    """A folder recipe pointed at volumes: when a ``SegFolderDataset``'s ``data_root`` holds
    ``imagesTr/`` (and no ``train/``), make its datasets ``VolumeSliceDataset`` (per-volume
    'auto' normalisation, foreground oversampling for training) and its ``SegMetric`` evaluators
    ``VolumeSegMetric``, so ``tools/train.py configs/unet_effb4_medical.py --data-root DIR`` trains
    on an nnU-Net folder. Returns whether it switched."""
    datasets = datasets_of(cfg, _FOLDER_TYPES)
    if not datasets:
        return False
    root = Path(str(datasets[0][1].data_root)).expanduser()
    if not is_volume_root(root) or (root / datasets[0][1].get('split', 'train')).is_dir():
        return False
    for key, dataset in datasets:
        kept = {name: dataset[name] for name in _KEPT_KEYS if name in dataset}
        if key == 'train_dataloader':  # the recipe's share (its CPU profile's included)
            kept['foreground_ratio'] = dataset.get('foreground_ratio', FOREGROUND_RATIO)
        cfg[key].dataset = ConfigDict(type=VOLUME_DATASET_TYPE, normalize=dict(mode='auto'),
                                      target_spacing='median', **kept)
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg.get(key)
        if isinstance(evaluator, dict) and evaluator.get('type') in _FOLDER_METRICS:
            cfg[key] = ConfigDict({**evaluator, 'type': VOLUME_METRIC_TYPE})
    print_log(f'{root} holds volumes (imagesTr/): training on their 2-D slices '
              f'(VolumeSliceDataset, per-volume normalisation) and scoring per case in 3-D '
              f'(VolumeSegMetric)', logger='current')
    return True


def _training_cases(train: Mapping[str, Any], description: VolumeDescription) -> List[VolumeCase]:
    """The cases the training dataset ``train`` (its config) reads."""
    return select_cases(description, train.get('split', 'train'), train.get('fold', 0),
                        train.get('num_folds', 5), train.get('images_dir'),
                        train.get('labels_dir'))


def resolve_volume_normalization(train: Mapping[str, Any], channel_names: Tuple[str, ...],
                                 saved: Any = None) -> List[dict]:
    """The concrete per-channel normalisation of a run: the checkpoint's (``saved``) when given,
    else the training dataset's config with every 'ct' channel's statistics measured on the
    training cases' foreground."""
    if saved:
        return [dict(entry) for entry in saved]
    norm = build_volume_norm(train.get('normalize'), channel_names)
    config = norm.to_config()
    wanted = [index for index, channel in enumerate(norm.channels)
              if channel.mode == 'ct' and not channel.measured]
    if not wanted:
        return config
    description = read_volume_description(train['data_root'])
    loaded = [load_case(case, description) for case in _training_cases(train, description)]
    for index in wanted:
        statistics = measure_ct_statistics([case.image[index] for case in loaded],
                                           [case.label for case in loaded])
        config[index].update(statistics)
        print_log(f'normalize channel {index} ({channel_names[index]}, mode=ct, from '
                  f'{len(loaded)} training cases): clip to {statistics["low"]:.4g}..'
                  f'{statistics["high"]:.4g}, mean {statistics["mean"]:.4g}, std '
                  f'{statistics["std"]:.4g}', logger='current')
    return config


def resolve_volume_spacing(train: Mapping[str, Any]) -> Optional[Sequence[float]]:
    """The training dataset's ``target_spacing`` made concrete: 'median' becomes the median
    in-plane spacing of the training split's cases (read from their headers); anything else is
    returned as it is."""
    target = train.get('target_spacing')
    if not (isinstance(target, str) and target in TARGET_SPACING_RULES):
        return target
    cases = _training_cases(train, read_volume_description(train['data_root']))
    spacings = case_spacings(cases)
    axis_rule = train.get('slice_axis', 'coarsest')
    median = median_in_plane_spacing(spacings, axis_rule)
    resampled = cases_off_target(spacings, median, axis_rule)
    print_log(f'target_spacing (median in-plane spacing of {len(cases)} training cases): '
              f'{tuple(round(v, 6) for v in median)}; {resampled} of them resampled to it, the '
              f'rest used as stored', logger='current')
    return list(median)


def _spacing_differs(given: Any, spacing: Optional[Sequence[float]]) -> bool:
    """Whether a config's ``target_spacing`` asks for other than ``spacing`` ('median' asks for
    whatever training resolved)."""
    if isinstance(given, str):
        return False
    if given is None or spacing is None:
        return (given is None) != (spacing is None)
    return not np.allclose(given, spacing)


def resolve_volume_data(cfg: Config, checkpoint_meta: Optional[Mapping[str, Any]] = None) -> None:
    """Fill ``classes``, ``in_channels``, ``normalize`` of every volume dataset and the model's
    ``num_classes``, ``in_channels``; a value the config sets must agree with the data."""
    switch_to_volumes(cfg)
    datasets = datasets_of(cfg, (VOLUME_DATASET_TYPE, 'VolumeSliceDataset'))
    if not datasets:
        return
    meta = dict((checkpoint_meta or {}).get('dataset_meta') or {})
    train = next((d for key, d in datasets if key == 'train_dataloader'), datasets[0][1])
    if meta.get('classes') and meta.get('channel_names'):
        classes, channel_names = tuple(meta['classes']), tuple(meta['channel_names'])
        source = 'the checkpoint'
    else:
        description = read_volume_description(train.data_root)
        classes, channel_names = description.classes, description.channel_names
        source = str(description.root / 'dataset.json')
    for key, dataset in datasets:
        for name, value in (('classes', classes), ('in_channels', len(channel_names))):
            given = dataset.get(name)
            if given is None:
                dataset[name] = value
            elif (tuple(given) if name == 'classes' else given) != value:
                raise DataError(f'{key}.dataset.{name}={given!r} but {source} gives {value!r}; '
                                f'remove the key to follow the data')
    normalize = resolve_volume_normalization(train, channel_names, meta.get('normalize'))
    for _, dataset in datasets:
        dataset.normalize = [ConfigDict(entry) for entry in normalize]
    # a checkpoint's spacing is what it trained at (none before resampling existed); else the
    # training split's median, for every split that asks for the median
    spacing = (meta.get('target_spacing') if meta.get('classes') else
               resolve_volume_spacing(train))
    from_checkpoint = bool(meta.get('classes'))
    for key, dataset in datasets:
        given = dataset.get('target_spacing')
        if from_checkpoint and _spacing_differs(given, spacing):
            print_log(f'{key}.dataset.target_spacing={given!r} is replaced by the checkpoint\'s '
                      f'{spacing!r}: a model is scored and run at the spacing it trained at',
                      logger='current', level=logging.WARNING)
        if from_checkpoint or given in TARGET_SPACING_RULES:
            dataset.target_spacing = None if spacing is None else list(spacing)
    evidence = (f'{datasets[0][0]}.dataset: classes {classes!r}, channels {channel_names!r} '
                f'from {source}')
    follow_the_data(cfg.model, 'num_classes', len(classes), evidence)
    follow_the_data(cfg.model, 'in_channels', len(channel_names), evidence)
