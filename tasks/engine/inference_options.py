"""Command-line inference options (``--tta``, ``--sliding-window``, ``--overlap``,
``--largest-component`` of ``tools/test.py`` and ``tools/infer.py``) as config changes.

They set the segmentation model's ``test_cfg`` (see ``tasks.segmentation.SegmentationModel``);
for volume metrics the largest component is taken in 3D by the metric instead of per slice.
Detectors take ``--sliding-window`` and ``--overlap`` (sliced prediction,
``tasks.detection.sliced``).
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Dict, Optional

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

__all__ = ['add_inference_arguments', 'apply_inference_options', 'fill_slide_window',
           'DEFAULT_TTA_FLIPS']

#: The flips ``--tta`` averages over when the config's ``model.test_cfg.tta`` names none.
DEFAULT_TTA_FLIPS = ('h', 'v')
VOLUME_METRIC = 'VolumeSegMetric'


def _evaluators(cfg: Config):
    """The test evaluator's metric configs (one dict, or the entries of a list)."""
    evaluator = cfg.get('test_evaluator')
    if isinstance(evaluator, dict):
        return [evaluator]
    return [entry for entry in evaluator or [] if isinstance(entry, dict)]


def _volume_metrics(cfg: Config):
    """The test evaluator's volume metrics, which post-process whole volumes themselves."""
    return [entry for entry in _evaluators(cfg) if VOLUME_METRIC in str(entry.get('type', ''))]


def _training_crop(cfg: Config, what: str) -> Any:
    """The window a sliding-window prediction uses when the config names none, so the model sees
    inputs of the size it was trained on: ``train_dataloader.dataset.crop_size``
    (segmentation), else the ``(height, width)`` of a ``RandomCrop`` in the training pipeline
    (detection)."""
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    crop = dataset.get('crop_size')
    if crop is None:
        crops = [(step['height'], step['width']) for step in dataset.get('pipeline') or []
                 if isinstance(step, dict) and step.get('type') == 'RandomCrop'
                 and 'height' in step and 'width' in step]
        crop = crops[-1] if crops else None
    if crop is None:
        raise ValueError(f'{what} needs a window size: set model.test_cfg.window in '
                         f'{cfg.filename or "the config"} (or --cfg-options model.test_cfg.'
                         f'window=256); its train_dataloader.dataset has no crop_size and its '
                         f'pipeline no RandomCrop. To predict whole images set '
                         f'model.test_cfg.mode=whole')
    return crop


def fill_slide_window(cfg: Config) -> Optional[Any]:
    """``model.test_cfg.mode='slide'`` without a ``window``: the window becomes the training
    crop (``train_dataloader.dataset.crop_size``, after the CPU profile and command-line options
    set it; for detectors the training pipeline's ``RandomCrop``), so validation,
    ``tools/test.py`` and ``tools/infer.py`` predict windows of the size the model trained on.
    Returns the window filled in (None: nothing to fill).

    Args:
        cfg: a segmentation or detection config, changed in place.
    """
    test_cfg = (cfg.get('model') or {}).get('test_cfg') or {}
    if test_cfg.get('mode') != 'slide' or test_cfg.get('window') is not None:
        return None
    cfg.model.test_cfg.window = window = _training_crop(cfg, "model.test_cfg.mode='slide'")
    return window


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--tta``, ``--sliding-window``, ``--overlap`` and ``--largest-component`` (the
    arguments of :func:`apply_inference_options`) to a tool's parser.

    Args:
        parser: the tool's argument parser.
    """
    group = parser.add_argument_group('prediction (--sliding-window and --overlap also for '
                                      'detectors)')
    group.add_argument('--tta', action='store_true',
                       help="average the logits over flips h, v and hv (and 90/180/270 degree "
                            "rotations only if the config's model.test_cfg.tta has rot90=True)")
    group.add_argument('--sliding-window', action='store_true',
                       help='predict in windows of model.test_cfg.window (default: the training '
                            'crop): Gaussian-weighted logits (segmentation), detections merged '
                            'across windows (detection)')
    group.add_argument('--overlap', type=float,
                       help='sliding windows: the fraction a window shares with its neighbour, '
                            'in [0, 1) (default 0.5 segmentation, 0.25 detection)')
    group.add_argument('--largest-component', action='store_true',
                       help="keep only each class's largest connected component (per volume "
                            "in 3D for volume metrics)")


def apply_inference_options(cfg: Config, tta: bool = False, sliding_window: bool = False,
                            overlap: Optional[float] = None,
                            largest_component: bool = False) -> Dict[str, Any]:
    """Turn prediction tricks on in ``cfg``; returns what changed. Segmentation configs take
    all; detection configs ``sliding_window`` and ``overlap``.

    Args:
        cfg: the config to change in place.
        tta: flip test-time augmentation: ``model.test_cfg.tta`` keeps the config's own
            dict if it has one (its flips, and ``rot90`` only if it says so), else becomes
            ``dict(flips=('h', 'v'), rot90=False)``.
        sliding_window: ``model.test_cfg.mode='slide'``; the window is the config's
            ``model.test_cfg.window``, else ``train_dataloader.dataset.crop_size``.
        overlap: ``model.test_cfg.overlap`` (sliding window only).
        largest_component: keep each class's largest connected component: the model's
            ``test_cfg.largest_component`` (per 2D image), or for a ``VolumeSegMetric`` test
            evaluator its ``largest_component`` (per 3D volume).
    """
    if not (tta or sliding_window or overlap is not None or largest_component):
        return {}
    source = cfg.filename or 'the config'
    task = cfg.get('task', 'segmentation')
    if task == 'detection' and (tta or largest_component):
        raise ValueError(f'--tta and --largest-component apply to segmentation configs; '
                         f"{source} has task='detection' (detectors take --sliding-window and "
                         f'--overlap)')
    if task not in ('segmentation', 'detection'):
        raise ValueError(f'--tta, --sliding-window, --overlap and --largest-component apply to '
                         f"segmentation and detection configs; {source} has task={task!r}")
    test_cfg = dict(cfg.model.get('test_cfg') or {})
    changed: Dict[str, Any] = {}
    if tta:
        existing = dict(test_cfg.get('tta') or {})
        test_cfg['tta'] = changed['model.test_cfg.tta'] = dict(
            flips=tuple(existing.get('flips', DEFAULT_TTA_FLIPS)),
            rot90=bool(existing.get('rot90', False)))
    if sliding_window:
        test_cfg['mode'] = changed['model.test_cfg.mode'] = 'slide'
        if test_cfg.get('window') is None:
            test_cfg['window'] = changed['model.test_cfg.window'] = _training_crop(
                cfg, '--sliding-window')
    if overlap is not None:
        if test_cfg.get('mode') != 'slide':
            raise ValueError(f'--overlap {overlap} applies to sliding windows only: add '
                             f"--sliding-window (or set model.test_cfg.mode='slide')")
        test_cfg['overlap'] = changed['model.test_cfg.overlap'] = overlap
    if largest_component:
        volume_metrics = _volume_metrics(cfg)
        for metric in volume_metrics:  # connected in 3D: the metric sees whole volumes
            metric['largest_component'] = True
        if volume_metrics:
            changed['test_evaluator.largest_component'] = True
        else:
            test_cfg['largest_component'] = changed['model.test_cfg.largest_component'] = True
    if any(key.startswith('model.') for key in changed):
        cfg.model.test_cfg = ConfigDict(test_cfg)
    print_log('Inference options: ' + ', '.join(f'{key}={value}' for key, value in
                                                changed.items()),
              logger='current', level=logging.INFO)
    return changed
