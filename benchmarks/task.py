"""The task benchmark: several models trained on one dataset with one recipe (augmentation, loss,
optimiser, schedule, iterations, crop, batch and seeds all the recipe's), each evaluated on the
same validation split, with the metric against iterations and against training seconds.

Candidates are named here; each is the recipe plus the overrides that swap the network. Ours
change ``model.arch`` / ``model.encoder_options``; peers swap the whole network through
:mod:`benchmarks.peers` and keep everything else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from .training_runs import RunSettings, Variant, run_series, summarize_runs, write_series_results

__all__ = ['SEGMENTATION_CANDIDATES', 'DETECTION_CANDIDATES', 'CANDIDATES', 'resolve_candidates',
           'run_task_benchmark']


def _ours_unet(arch: str, **encoder_options: Any) -> Dict[str, Any]:
    return dict(model=dict(arch=arch, encoder_options=encoder_options))


def _peer_unet(**network: Any) -> Dict[str, Any]:
    return dict(model=dict(type='effnet_backbones.PeerSegmentationModel', network=network))


def _ours_retinanet(arch: str) -> Dict[str, Any]:
    # from scratch: no ImageNet weights to load, nothing to freeze
    return dict(model=dict(backbone=dict(arch=arch, pretrained=None, frozen_stages=-1)))


#: name -> overrides of a segmentation recipe ('recipe' is the recipe itself, unchanged)
SEGMENTATION_CANDIDATES: Dict[str, Dict[str, Any]] = {
    'recipe': {},
    'ours-b0': _ours_unet('b0', scse=False),
    'ours-b0-scse': _ours_unet('b0', scse=True),
    'ours-b4': _ours_unet('b4', scse=False),
    'ours-b4-scse': _ours_unet('b4', scse=True),
    'ours-b4-scse-me': _ours_unet('b4', scse=True, memory_efficient=True),
    'smp-resnet34': _peer_unet(library='smp', arch='Unet', encoder_name='resnet34'),
    'smp-efficientnet-b4': _peer_unet(library='smp', arch='Unet', encoder_name='efficientnet-b4'),
    'monai-efficientnet-b4': _peer_unet(library='monai', backbone='efficientnet-b4'),
}

#: name -> overrides of a detection recipe
DETECTION_CANDIDATES: Dict[str, Dict[str, Any]] = {
    'recipe': {},
    'ours-retinanet-b0': _ours_retinanet('b0'),
    'ours-retinanet-b3': _ours_retinanet('b3'),
    'tv-retinanet-r50': dict(model=dict(type='effnet_backbones.PeerRetinaNet',
                                        network=dict(depth='resnet50'))),
    # on an EfficientDet recipe: effdet's own D0 (its anchors, loss, post-processing; the
    # recipe's anchor_scale and input channels), every batch padded to its fixed input side
    'effdet-d0': dict(model=dict(type='effnet_backbones.PeerEffDet', name='tf_efficientdet_d0')),
    'effdet-d0-256': dict(model=dict(type='effnet_backbones.PeerEffDet',
                                     name='tf_efficientdet_d0', image_size=256)),
    # the smallest fixed input holding 128 px crops and 120 x 256 tiles (the nuclei demo)
    # (the recipe's norm_layer and test_cfg apply: with GroupNorm, in windows, as our D0)
    'effdet-d0-128x256': dict(model=dict(type='effnet_backbones.PeerEffDet',
                                         name='tf_efficientdet_d0', image_size=(128, 256))),
    # effdet's own BatchNorm whatever the recipe says
    'effdet-d0-128x256-bn': dict(model=dict(type='effnet_backbones.PeerEffDet',
                                            name='tf_efficientdet_d0', image_size=(128, 256),
                                            norm_layer='bn')),
    # crops of 128 and windows of 128 (sliced prediction) fill effdet's input without padding
    'effdet-d0-128-bn': dict(model=dict(type='effnet_backbones.PeerEffDet',
                                        name='tf_efficientdet_d0', image_size=128,
                                        norm_layer='bn')),
    'ours-efficientdet-d0-me': dict(model=dict(backbone=dict(memory_efficient=True))),
}

CANDIDATES = {'segmentation': SEGMENTATION_CANDIDATES, 'detection': DETECTION_CANDIDATES}


def resolve_candidates(task: str, names: Sequence[str],
                       extra: Mapping[str, Any] = None) -> List[Variant]:
    """The named candidates of ``task`` as variants; ``extra`` overrides apply to every one
    (merged under each candidate's own)."""
    table = CANDIDATES[task]
    unknown = [name for name in names if name not in table]
    if unknown:
        raise ValueError(f'unknown {task} candidates {unknown}; known: {", ".join(table)}')
    return [Variant(name, _merge(dict(extra or {}), table[name])) for name in names]


def _merge(base: Dict[str, Any], top: Mapping[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def run_task_benchmark(task: str, candidates: Sequence[str], settings: RunSettings, out: Path,
                       reference: str = None, per_class_prefix: str = None,
                       header: str = '', log=print) -> List[Dict[str, Any]]:
    """Train every candidate with every seed and write ``OUT.json``, ``OUT.md``, ``OUT.png``.

    Runs live in ``OUT_runs/<candidate>/seed<N>/`` and are reused when their result exists.
    Returns the summary rows.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs_dir = out.parent / f'{out.name}_runs'
    results = run_series(resolve_candidates(task, candidates), settings, runs_dir, log=log)
    rows = summarize_runs(results, settings.metric, per_class_prefix, reference)
    write_series_results(out, header, settings, rows, results, task=task)
    return rows
