"""Segmentation configs that follow their data: classes and channels from the dataset folder (or
from the training checkpoint, for evaluation and inference), checked against what a config sets.
Registered as the segmentation task's data resolver (:mod:`tasks.engine.data`)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from ..common.dataset_norm import resolve_dataset_normalization
from ..common.io import DataError
from ..engine.data import datasets_of, follow_the_data
from ..engine.inference_options import fill_slide_window
from .dataset_info import SegDatasetInfo, scan_folder
from .io import pair_samples
from .volume_config import resolve_volume_data

__all__ = ['resolve_segmentation_data', 'DATASET_TYPE']

DATASET_TYPE = 'effnet_backbones.SegFolderDataset'


def _scan(datasets: List[Tuple[str, ConfigDict]]) -> SegDatasetInfo:
    first = datasets[0][1]
    splits = tuple(dict.fromkeys(['train'] + [d.get('split', 'train') for _, d in datasets]))
    info = scan_folder(first.data_root, splits, first.get('img_dir', 'images'),
                       first.get('mask_dir', 'masks') or 'masks', first.get('ignore_index', 255))
    print_log(info.summary(), logger='current')
    for text in info.warnings:
        print_log(f'{info.root}: {text}', logger='current', level=logging.WARNING)
    info.raise_problems()
    return info


def _check_classes(key: str, given: Tuple[str, ...], found: Tuple[str, ...], source: str,
                   declared: bool) -> None:
    if declared and tuple(given) != tuple(found):
        raise DataError(f'{key}.dataset.classes={tuple(given)!r} but {source} names '
                        f'{tuple(found)!r}; remove the key to follow the data, or make them agree')
    if len(given) < len(found):
        raise DataError(f'{key}.dataset.classes has {len(given)} classes {tuple(given)!r}, but '
                        f'{source} gives {len(found)}; remove the key to follow the data')


def resolve_segmentation_data(cfg: Config, checkpoint_meta: Optional[Mapping[str, Any]] = None
                              ) -> None:
    """Fill ``classes``, ``in_channels`` and the model's ``num_classes``, ``in_channels`` (for
    folder datasets here, for volume datasets in :func:`~tasks.segmentation.volume_config.
    resolve_volume_data`), and a sliding-window ``model.test_cfg`` without a window (the
    training crop, :func:`~tasks.engine.inference_options.fill_slide_window`)."""
    fill_slide_window(cfg)
    resolve_volume_data(cfg, checkpoint_meta)
    datasets = datasets_of(cfg, (DATASET_TYPE, 'SegFolderDataset'))
    if not datasets:
        return
    meta = dict((checkpoint_meta or {}).get('dataset_meta') or {})
    needed = any(d.get('classes') is None or d.get('in_channels') is None for _, d in datasets)
    if meta.get('classes') and meta.get('in_channels'):
        classes, in_channels, source, declared = (tuple(meta['classes']), meta['in_channels'],
                                                  'the checkpoint', True)
    elif needed or cfg.model.get('num_classes') is None or cfg.model.get('in_channels') is None:
        info = _scan(datasets)
        classes, in_channels, source = info.classes, info.in_channels, info.class_source
        declared = not source.startswith('the values')
        for _, dataset in datasets:
            dataset.setdefault('verify', 'pairs')  # every file was just read and checked
    else:  # everything explicit, as configs were before; the datasets check their files
        _resolve_normalization(datasets, meta)
        return
    for key, dataset in datasets:
        if dataset.get('classes') is None:
            dataset.classes = classes
        else:
            _check_classes(key, tuple(dataset.classes), classes, source, declared)
        if dataset.get('in_channels') is None:
            dataset.in_channels = in_channels  # an explicit value converts gray <-> RGB
    _resolve_normalization(datasets, meta)
    reference = datasets[0][1]
    evidence = (f'{datasets[0][0]}.dataset: classes {tuple(reference.classes)!r} from {source}, '
                f'{reference.in_channels} input channels')
    follow_the_data(cfg.model, 'num_classes', len(reference.classes), evidence)
    follow_the_data(cfg.model, 'in_channels', reference.in_channels, evidence)



def _resolve_normalization(datasets: List[Tuple[str, ConfigDict]], meta: Mapping[str, Any]) -> None:
    train = next((d for key, d in datasets if key == 'train_dataloader'), datasets[0][1])

    def training_images():
        folder = Path(train.data_root).expanduser() / train.get('split', 'train')
        return [pair.image for pair in pair_samples(folder / train.get('img_dir', 'images'), None)]

    resolve_dataset_normalization([d for _, d in datasets], meta, training_images,
                                  train.in_channels)
