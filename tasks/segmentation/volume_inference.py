"""Predicting volumes slice by slice (``tools/infer.py CONFIG CKPT case_0000.nii.gz ...``).

Per case: ``<case>.nii.gz`` (the class index per voxel, uint8, with the input's shape, affine and
header, so it opens aligned over the scan in ITK-SNAP, 3D Slicer or FSLeyes; ``<case>.nrrd`` or
``<case>.mha`` with the input's origin, spacing and direction for NRRD and MetaImage inputs) and
``<case>_slice<k>_overlay.png`` for a few slices (the classes coloured over the image). The volume
is prepared as the checkpoint's training data was (channels, per-volume normalisation, slicing
axis, all saved in the checkpoint), its slices are predicted in batches with the model's
``test_cfg`` (sliding window, test-time augmentation), and the largest-component option acts in
3-D on the assembled volume.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config

from ..common.inference import refuse_existing
from ..common.io import IMAGE_SUFFIXES, DataError, expand_inputs
from ..common.visualize import overlay, to_display, write_rgb
from ..common.volume_io import (VOLUME_SUFFIXES, Volume, is_volume_file, output_suffix,
                                volume_suffix, write_volume_like)
from ..common.volume_norm import build_volume_norm
from ..engine.checkpoint import load_trained_model
from .postprocess import keep_largest_component, largest_component_classes
from .volume_dataset import SliceStack, prepare_case
from .volume_spacing import resize_logits, resize_slices
from .volumes import VolumeCase, VolumeDescription, case_name_of, load_case, split_channel

__all__ = ['VolumeInferencer', 'VolumePrediction', 'channel_file', 'channel_files', 'volume_inputs',
           'OVERLAY_SLICES']

#: overlays are written for this many slices (evenly spaced over those with foreground)
OVERLAY_SLICES = 3


def channel_file(path: Path, channel: int) -> Path:
    """The file of channel ``channel`` of the case ``path`` is a channel file of:
    ``x_0001.nrrd``, 0 -> ``x_0000.nrrd``."""
    return path.with_name(f'{split_channel(path)[0]}_{channel:04d}{volume_suffix(path)}')


def channel_files(path: Path, channels: int) -> Tuple[Path, ...]:
    """The files of one case given its first: ``x_0000.nii.gz`` -> ``x_0000 ... x_{C-1}``; a file
    without the ``_0000`` suffix (or a 4-D file) stands for the whole case."""
    path = Path(path)
    if channels == 1 or split_channel(path)[1] != 0:
        return (path,)
    files = tuple(channel_file(path, index) for index in range(channels))
    missing = [file.name for file in files if not file.is_file()]
    if missing:
        raise DataError(f'case {case_name_of(path)!r}: the model takes {channels} channels but '
                        f'{", ".join(missing)} is missing next to {path}')
    return files


@dataclass
class VolumePrediction:
    """One case's prediction: the class map ``(X, Y, Z)`` uint8, the seconds it took, the input's
    :class:`~tasks.common.volume_io.Volume` (affine, header) and its prepared slices."""

    case: str
    labels: np.ndarray
    seconds: float
    reference: Volume
    stack: SliceStack


class VolumeInferencer:
    """A segmentation model trained on volumes, run over cases in any volume format.

    Args:
        cfg: the training config (its model with ``test_cfg``; ``test_evaluator.largest_component``
            or ``model.test_cfg.largest_component`` turn 3-D post-processing on).
        checkpoint: a checkpoint written by training on volumes.
        device: 'cuda', 'cpu' ...; default CUDA when available.
        batch_size: slices per forward pass.
        overwrite: replace existing outputs (otherwise they are an error, before any is written).
    """

    def __init__(self, cfg: Config, checkpoint: str, device: Optional[str] = None,
                 batch_size: int = 8, overwrite: bool = False) -> None:
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.model, meta = load_trained_model(cfg, checkpoint, self.device)
        dataset_meta = dict(meta.get('dataset_meta') or {})
        if not dataset_meta.get('channel_names'):
            raise DataError(f'checkpoint {checkpoint} was not trained on volumes (its dataset_meta '
                            f'has no channel_names); volumes need a checkpoint of a '
                            f'VolumeSliceDataset run, e.g. configs/unet_effb4_volumes.py')
        self.classes = tuple(dataset_meta['classes'])
        self.channel_names = tuple(dataset_meta['channel_names'])
        self.norm = build_volume_norm(dataset_meta.get('normalize'), self.channel_names)
        self.slice_axis = dataset_meta.get('slice_axis', 'coarsest')
        # checkpoints from before resampling have no entry: they trained on slices as stored
        self.target_spacing = dataset_meta.get('target_spacing')
        evaluator = cfg.get('test_evaluator') or {}
        test_cfg = cfg.model.get('test_cfg') or {}
        self.component_classes = largest_component_classes(
            evaluator.get('largest_component') or test_cfg.get('largest_component') or False)
        self.batch_size = batch_size
        self.overwrite = overwrite

    def _description(self, path: Path) -> VolumeDescription:
        ending = volume_suffix(path)
        return VolumeDescription(path.parent, self.classes, self.channel_names, ending)

    @torch.no_grad()
    def predict(self, path: Path) -> VolumePrediction:
        """Predict the case whose (first) file is ``path``."""
        start = time.perf_counter()
        path = Path(path)
        case = VolumeCase(case_name_of(path), channel_files(path, len(self.channel_names)), None)
        loaded = load_case(case, self._description(path))
        stack = prepare_case(loaded, self.norm, self.slice_axis, self.target_spacing)
        predictions = []
        for first in range(0, len(stack.image), self.batch_size):
            batch = np.stack([self.norm.standardize(image)
                              for image in stack.image[first:first + self.batch_size]])
            inputs = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
            logits = resize_logits(self.model.predict_logits(inputs.to(self.device)),
                                   stack.native_size)  # back to the case's own grid
            predictions.append(self.model.labels(logits).to(torch.uint8).cpu().numpy())
        labels = np.moveaxis(np.concatenate(predictions), 0, stack.axis)
        if self.component_classes != []:
            labels = keep_largest_component(labels, self.component_classes)
        return VolumePrediction(case.name, labels, time.perf_counter() - start, loaded.reference,
                                stack)

    def _overlay_slices(self, labels_first: np.ndarray) -> List[int]:
        with_foreground = np.nonzero(labels_first.reshape(len(labels_first), -1).max(1) > 0)[0]
        candidates = with_foreground if len(with_foreground) else np.arange(len(labels_first))
        picks = np.linspace(0, len(candidates) - 1, min(OVERLAY_SLICES, len(candidates)))
        return sorted({int(candidates[int(round(p))]) for p in picks})

    def run(self, inputs: Sequence[Path], out_dir: Path) -> List[Path]:
        """Predict every case; return the files written. Existing outputs are an error unless
        ``overwrite``, checked for every case before anything is written."""
        folder = Path(out_dir)
        cases = [Path(path) for path in inputs]
        names = [case_name_of(path) for path in cases]
        outputs = [folder / f'{name}{output_suffix(volume_suffix(path))}'
                   for name, path in zip(names, cases)]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise DataError(f'several inputs name case(s) {duplicates}; their outputs would '
                            f'overwrite each other')
        inputs_read = {file.resolve() for path in cases
                       for file in channel_files(path, len(self.channel_names))}
        clashes = [str(output) for output in outputs if output.resolve() in inputs_read]
        if clashes:  # a scan named like its case (Slicer's scan.nrrd) predicted into its folder
            raise DataError(f'output(s) {clashes} would replace the input scan(s) of the same '
                            f'name; choose another --out-dir')
        # the overlays' number depends on the prediction: any overlay of the case counts
        refuse_existing([p for name, output in zip(names, outputs)
                         for p in [output, *folder.glob(f'{name}_slice*_overlay.png')]],
                        self.overwrite)
        folder.mkdir(parents=True, exist_ok=True)
        written: List[Path] = []
        self.timings: Dict[str, float] = {}
        for path, output in zip(cases, outputs):
            prediction = self.predict(path)
            self.timings[prediction.case] = prediction.seconds
            written.append(write_volume_like(prediction.labels, prediction.reference, output))
            stack = prediction.stack
            labels_first = np.moveaxis(prediction.labels, stack.axis, 0)
            for k, index in enumerate(self._overlay_slices(labels_first)):
                image = resize_slices(stack.image[index:index + 1], stack.native_size)[0]
                target = folder / f'{prediction.case}_slice{k}_overlay.png'
                write_rgb(target, overlay(to_display(image[..., :1] if image.shape[-1] != 3
                                                     else image), labels_first[index]))
                written.append(target)
        return written


def volume_inputs(inputs: Sequence[str]) -> Optional[List[Path]]:
    """The volume files that files, folders and glob patterns name, one per case, or ``None`` when
    they name 2-D images only; a mix of both is an error.

    A ``<case>_0000`` file stands for its case: the case's other channels (``_0001`` ...), which a
    folder or a glob lists too, are left out (:func:`channel_files` finds them again)."""
    # a glob also matches detached data files (x.raw beside x.mhd) and hidden partial writes
    files = [path for path in expand_inputs(inputs, IMAGE_SUFFIXES + VOLUME_SUFFIXES)
             if not path.name.startswith('.')
             and (is_volume_file(path) or path.name.lower().endswith(IMAGE_SUFFIXES))]
    flags = [is_volume_file(path) for path in files]
    if not any(flags):
        return None
    if not all(flags):
        images = [path.name for path, flag in zip(files, flags) if not flag]
        raise DataError(f'inputs {list(inputs)[:4]} mix volumes and 2-D images '
                        f'({", ".join(images[:3])}); run them separately')
    listed = set(files)

    def first_of_case(path: Path) -> bool:
        return not split_channel(path)[1] or channel_file(path, 0) not in listed
    return [path for path in files if first_of_case(path)]
