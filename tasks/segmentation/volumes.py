"""Medical volumes in the nnU-Net v2 raw layout (and the Medical Segmentation Decathlon's).

nnU-Net v2::

    DATA_ROOT/dataset.json                      channel_names, labels, numTraining, file_ending
    DATA_ROOT/imagesTr/<case>_0000.nii.gz       one file per channel (modality), _0000, _0001 ...
    DATA_ROOT/labelsTr/<case>.nii.gz            class index per voxel
    DATA_ROOT/imagesTs/<case>_0000.nii.gz       optional test cases (labelsTs/ if scored)
    DATA_ROOT/splits_final.json                 optional: [{"train": [...], "val": [...]}, ...]

The Decathlon's ``imagesTr/<case>.nii.gz`` (several modalities as a 4-D file, channels last, and
``modality`` instead of ``channel_names``) is read too. ``file_ending`` picks the format, as in
nnU-Net v2: NIfTI (``.nii.gz``, ``.nii``), NRRD (``.nrrd``, ``.nhdr``) or MetaImage (``.mha``,
``.mhd``). :func:`find_cases` pairs the files and
:func:`load_case` reads one case and checks it; every problem is a
:class:`~tasks.common.io.DataError` naming the case and the mismatch, raised before training starts
because the datasets load (and so check) every case when they are built.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..common.io import DataError, shorten_list
from ..common.volume_io import (VOLUME_SUFFIXES, Volume, output_suffix, place_on_grid,
                               read_spacing, read_volume, volume_stem, volume_suffix,
                               write_volume_like)
from .dataset_info import read_class_names

__all__ = ['VOLUME_LAYOUT', 'VOLUME_FOLDERS', 'VolumeDescription', 'VolumeCase', 'LoadedCase',
           'SPLITS', 'is_volume_root', 'read_volume_description', 'find_cases', 'split_cases',
           'select_cases', 'case_spacings', 'load_case', 'case_name_of', 'split_channel',
           'check_volume_folder', 'convert_volume_folder']

VOLUME_LAYOUT = ('DATA_ROOT/imagesTr/<case>_0000.nii.gz (one file per channel; or the '
                 'file_ending of dataset.json: .nrrd, .mha ...), '
                 'DATA_ROOT/labelsTr/<case>.nii.gz and DATA_ROOT/dataset.json')
#: the folders of the layout that hold volumes
VOLUME_FOLDERS = ('imagesTr', 'labelsTr', 'imagesTs', 'labelsTs')
#: 'train' / 'val': a fold of the training cases; 'all': every training case; 'test': imagesTs
SPLITS = ('train', 'val', 'all', 'test')
#: nnU-Net's seed for its 5-fold split (only used when the folder has no splits_final.json)
SPLIT_SEED = 12345
_CHANNEL_SUFFIX = re.compile(r'^(?P<case>.+)_(?P<channel>\d{4})$')
#: how far two affines may differ (world units) and still describe the same grid
AFFINE_TOLERANCE = 1e-3


def is_volume_root(root: Path) -> bool:
    """Whether ``root`` is laid out as nnU-Net / Decathlon volumes (it has ``imagesTr/``)."""
    return (Path(root) / 'imagesTr').is_dir()


@dataclass(frozen=True)
class VolumeDescription:
    """What ``dataset.json`` declares: class names (index order), channel names, file ending."""

    root: Path
    classes: Tuple[str, ...]
    channel_names: Tuple[str, ...]
    file_ending: str

    @property
    def in_channels(self) -> int:
        """The number of input channels (modalities)."""
        return len(self.channel_names)


def read_volume_description(root: Path) -> VolumeDescription:
    """Read ``DATA_ROOT/dataset.json`` (required for volumes)."""
    root = Path(root)
    description = root / 'dataset.json'
    if not description.is_file():
        raise DataError(f'{description} not found; a volume dataset needs it ({VOLUME_LAYOUT}), '
                        f'with "channel_names" (e.g. {{"0": "CT"}}) and "labels" '
                        f'(e.g. {{"background": 0, "tumour": 1}})')
    names = read_class_names(root)
    if not names.channel_names:
        raise DataError(f'{description} has no "channel_names" (nnU-Net v2) or "modality" '
                        f'(Decathlon) entry; add e.g. "channel_names": {{"0": "T1"}}')
    data = json.loads(description.read_text())
    file_ending = data.get('file_ending', '.nii.gz')
    if file_ending not in VOLUME_SUFFIXES:
        raise DataError(f'{description}: file_ending {file_ending!r} is not supported; volumes '
                        f'are read as {", ".join(VOLUME_SUFFIXES)}')
    return VolumeDescription(root, names.names, names.channel_names, file_ending)


@dataclass(frozen=True)
class VolumeCase:
    """One case: its image file per channel (one 4-D file for the Decathlon layout) and its
    label file (``None`` for unlabelled test cases)."""

    name: str
    images: Tuple[Path, ...]
    label: Optional[Path]


def _group_images(folder: Path, description: VolumeDescription) -> Dict[str, Tuple[Path, ...]]:
    files = sorted(path for path in folder.iterdir()
                   if path.is_file() and not path.name.startswith('.'))
    ending = description.file_ending
    others = [path.name for path in files if not path.name.endswith(ending)]
    volume_others = [name for name in others if volume_suffix(name)]
    if volume_others:
        raise DataError(f'{folder} holds {shorten_list(volume_others)}, but dataset.json says '
                        f'file_ending {ending!r}; make them agree')
    files = [path for path in files if path.name.endswith(ending)]
    if not files:
        raise DataError(f'no {ending} images in {folder}; expected {VOLUME_LAYOUT}')
    stems = [path.name[:-len(ending)] for path in files]
    matches = [_CHANNEL_SUFFIX.match(stem) for stem in stems]
    if not all(matches):  # the Decathlon layout: one (possibly 4-D) file a case
        if any(matches):
            plain = [stem for stem, match in zip(stems, matches) if not match]
            raise DataError(f'{folder} mixes nnU-Net names (<case>_0000{ending}) with '
                            f'{shorten_list(plain)}; use one layout')
        return {stem: (path,) for stem, path in zip(stems, files)}
    by_case: Dict[str, Dict[int, Path]] = {}
    for match, path in zip(matches, files):
        by_case.setdefault(match['case'], {})[int(match['channel'])] = path
    expected = set(range(description.in_channels))
    cases = {}
    for case, channels in by_case.items():
        missing = sorted(expected - set(channels))
        extra = sorted(set(channels) - expected)
        if missing:
            names = [f'{index:04d} ({description.channel_names[index]})' for index in missing]
            raise DataError(f'case {case!r} in {folder} is missing channel(s) {", ".join(names)}: '
                            f'expected {case}_{missing[0]:04d}{ending} (dataset.json lists '
                            f'{description.in_channels} channel(s) {description.channel_names})')
        if extra:
            raise DataError(f'case {case!r} in {folder} has {case}_{extra[0]:04d}{ending} but '
                            f'dataset.json channel_names lists only {description.in_channels} '
                            f'channel(s) {description.channel_names}')
        cases[case] = tuple(channels[index] for index in sorted(channels))
    return cases


def find_cases(description: VolumeDescription, images_dir: str = 'imagesTr',
               labels_dir: Optional[str] = 'labelsTr') -> List[VolumeCase]:
    """Every case in ``images_dir`` with its label in ``labels_dir`` (``None``: unlabelled)."""
    folder = description.root / images_dir
    if not folder.is_dir():
        raise DataError(f'image folder {folder} not found; expected {VOLUME_LAYOUT}')
    images = _group_images(folder, description)
    if labels_dir is None:
        return [VolumeCase(name, files, None) for name, files in sorted(images.items())]
    label_folder = description.root / labels_dir
    if not label_folder.is_dir():
        raise DataError(f'label folder {label_folder} not found; expected {VOLUME_LAYOUT}')
    ending = description.file_ending
    labels = {path.name[:-len(ending)]: path for path in label_folder.iterdir()
              if path.name.endswith(ending) and not path.name.startswith('.')}
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled:
        raise DataError(f'{len(unlabelled)} case(s) in {folder} have no label in {label_folder}: '
                        f'{shorten_list(unlabelled)} (expected {labels_dir}/<case>{ending})')
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise DataError(f'{len(orphans)} label(s) in {label_folder} have no image in {folder}: '
                        f'{shorten_list(orphans)}')
    return [VolumeCase(name, images[name], labels[name]) for name in sorted(images)]


def split_cases(cases: Sequence[VolumeCase], split: str, root: Path, fold: int = 0,
                num_folds: int = 5) -> List[VolumeCase]:
    """The cases of ``split`` ('train', 'val' or 'all'; 'test' cases come from ``imagesTs``).

    'train' and 'val' are fold ``fold`` of ``DATA_ROOT/splits_final.json`` when the folder has one
    (nnU-Net's file, so nnU-Net and this project train on the same split), else of a
    deterministic ``num_folds``-fold split: the sorted case names permuted with seed 12345 and
    cut into folds.
    """
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    if split in ('all', 'test'):
        return list(cases)
    by_name = {case.name: case for case in cases}
    splits_file = Path(root) / 'splits_final.json'
    if splits_file.is_file():
        try:
            folds = json.loads(splits_file.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f'{splits_file} is not valid JSON: {err}') from None
        if not isinstance(folds, list) or not 0 <= fold < len(folds):
            raise DataError(f'{splits_file} has {len(folds) if isinstance(folds, list) else 0} '
                            f'fold(s); fold={fold} asked for')
        names = folds[fold].get(split) or []
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise DataError(f'{splits_file} fold {fold} {split!r} names case(s) that are not in '
                            f'imagesTr: {shorten_list(unknown)}')
        return [by_name[name] for name in names]
    if len(cases) < 2:
        raise DataError(f'{root} has {len(cases)} training case(s): a train/val split needs 2 '
                        f'or more (or use split="all")')
    if not 0 <= fold < num_folds or num_folds < 2:
        raise ValueError(f'fold must be in 0..num_folds-1 with num_folds >= 2, got fold={fold}, '
                         f'num_folds={num_folds}')
    order = np.random.RandomState(SPLIT_SEED).permutation(len(cases))
    folds = np.array_split(order, min(num_folds, len(cases)))
    val = set(folds[fold % len(folds)].tolist())
    chosen = [i for i in range(len(cases)) if (i in val) == (split == 'val')]
    return [sorted(cases, key=lambda case: case.name)[i] for i in chosen]


def select_cases(description: VolumeDescription, split: str = 'train', fold: int = 0,
                 num_folds: int = 5, images_dir: Optional[str] = None,
                 labels_dir: Optional[str] = None) -> List[VolumeCase]:
    """The cases of a split as the volume datasets read them: 'test' from ``imagesTs`` (with
    ``labelsTs`` when present), the others fold ``fold`` of ``imagesTr`` / ``labelsTr``
    (:func:`split_cases`); ``labels_dir=''`` reads no labels."""
    if split == 'test':
        images_dir = images_dir or 'imagesTs'
        if labels_dir is None:
            labels_dir = 'labelsTs' if (description.root / 'labelsTs').is_dir() else ''
    cases = find_cases(description, images_dir or 'imagesTr',
                       (labels_dir if labels_dir is not None else 'labelsTr') or None)
    return split_cases(cases, split, description.root, fold, num_folds)


def case_spacings(cases: Sequence[VolumeCase]) -> List[Tuple[float, float, float]]:
    """Each case's voxel spacing, from its first image's header (no voxel is read)."""
    return [read_spacing(case.images[0], f'image of case {case.name!r}') for case in cases]


@dataclass
class LoadedCase:
    """A case in memory: ``image`` ``(C, X, Y, Z)`` as stored, ``label`` ``(X, Y, Z)`` uint8 or
    ``None``, the first channel's :class:`~tasks.common.volume_io.Volume` (affine, header), and
    whether the label file covered another part of the image's grid and was placed on it."""

    name: str
    image: np.ndarray
    label: Optional[np.ndarray]
    reference: Volume
    label_placed: bool = False

    @property
    def spacing(self) -> Tuple[float, ...]:
        """Voxel sides along the three axes."""
        return self.reference.spacing


def _same_grid(volume: Volume, reference: Volume) -> Optional[str]:
    if volume.shape != reference.shape:
        return f'shape {volume.shape} but {reference.path.name} is {reference.shape}'
    if not np.allclose(volume.affine, reference.affine, atol=AFFINE_TOLERANCE):
        return (f'affine\n{np.round(volume.affine, 4)}\nbut {reference.path.name} has\n'
                f'{np.round(reference.affine, 4)}')
    return None


def _label_array(volume: Volume, case: str, num_classes: int) -> np.ndarray:
    array = volume.array
    while array.ndim > 3 and array.shape[-1] == 1:  # (X, Y, Z, 1) is still one label volume
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f'label {volume.path} of case {case!r} has shape {volume.array.shape}: a '
                        f'label volume must be 3-D (X, Y, Z), one class index per voxel')
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise DataError(f'label {volume.path} of case {case!r} holds non-integer values; '
                            f'labels are class indices 0..{num_classes - 1}')
    values = np.unique(array)
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise DataError(f'label {volume.path} of case {case!r} holds value(s) '
                        f'{shorten_list(bad.tolist())} but dataset.json declares {num_classes} '
                        f'classes (0..{num_classes - 1})')
    return array.astype(np.uint8)


def load_case(case: VolumeCase, description: VolumeDescription) -> LoadedCase:
    """Read and check one case: every channel on one grid, the label on the same grid, 3-D, with
    values among the declared classes."""
    channels: List[np.ndarray] = []
    reference: Optional[Volume] = None
    for index, path in enumerate(case.images):
        volume = read_volume(path, f'image of case {case.name!r}')
        arrays = ([volume.array[..., c] for c in range(volume.array.shape[3])]
                  if volume.array.ndim == 4 else [volume.array])
        if volume.array.ndim > 4:
            raise DataError(f'image {path} of case {case.name!r} has shape {volume.array.shape}; '
                            f'expected (X, Y, Z) or (X, Y, Z, C)')
        if reference is None:
            reference = volume
        else:
            problem = _same_grid(volume, reference)
            if problem:
                raise DataError(f'case {case.name!r}: channel {index:04d} {path.name} has '
                                f'{problem}; the channels of a case must share one grid')
        for array in arrays:
            if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
                raise DataError(f'image {path} of case {case.name!r} holds NaN or infinite values')
        channels.extend(arrays)
    if len(channels) != description.in_channels:
        raise DataError(f'case {case.name!r} has {len(channels)} channel(s) '
                        f'({", ".join(p.name for p in case.images)}) but dataset.json '
                        f'channel_names lists {description.in_channels} '
                        f'{description.channel_names}')
    label, problem = None, None
    if case.label is not None:
        label_volume = read_volume(case.label, f'label of case {case.name!r}')
        problem = _same_grid(label_volume, reference)
        if problem:
            label_volume = _label_on_image_grid(label_volume, reference, case.name, problem)
        label = _label_array(label_volume, case.name, len(description.classes))
    return LoadedCase(case.name, np.stack(channels), label, reference, bool(problem))


def _label_on_image_grid(label: Volume, image: Volume, case: str, problem: str) -> Volume:
    """A label that covers a whole-voxel part of its image's grid (3D Slicer exports
    segmentations cropped to their extent) placed on that grid, background elsewhere; any other
    grid, or labelled voxels outside the image, is an error naming both."""
    mismatch = (f'case {case!r}: label {label.path.name} has {problem}; the label must lie on '
                f'its image\'s grid (same shape and affine), or on a part of it')
    try:
        array = place_on_grid(label.array, label.affine, image.affine, image.shape,
                              tolerance=AFFINE_TOLERANCE)
    except ValueError as err:
        raise DataError(f'{mismatch} ({err})') from None
    lost = int(np.count_nonzero(label.array)) - int(np.count_nonzero(array))
    if lost:
        raise DataError(f'{mismatch}: {lost} labelled voxel(s) lie outside the image\'s grid')
    return Volume(array, image.affine, image.header, label.path)


def split_channel(path: Path) -> Tuple[str, Optional[int]]:
    """``imagesTs/la_001_0002.nrrd`` -> ``('la_001', 2)``; a file without the nnU-Net channel
    suffix (the Decathlon's ``la_001.nii.gz``) -> ``('la_001', None)``."""
    stem = volume_stem(path)
    match = _CHANNEL_SUFFIX.match(stem)
    return (match['case'], int(match['channel'])) if match else (stem, None)


def case_name_of(path: Path) -> str:
    """``imagesTs/la_001_0000.nii.gz`` -> ``la_001`` (the Decathlon's ``la_001.nii.gz`` too)."""
    return split_channel(path)[0]


def _rounded(values: np.ndarray) -> Tuple[float, ...]:
    return tuple(round(float(value), 4) for value in values)


def _spacing_summary(cases: Sequence[VolumeCase], spacings: Dict[str, Tuple[float, ...]],
                     root: Path) -> str:
    """The median in-plane spacing training would resample to (over fold 0's training cases,
    as ``target_spacing='median'`` takes it) and how many of the cases differ from it."""
    from .volume_spacing import cases_off_target, median_in_plane_spacing

    try:
        names = [case.name for case in split_cases(cases, 'train', root)]
        source = "fold 0's training cases"
    except DataError:  # too few cases for a split: say what all of them give
        names, source = [case.name for case in cases], 'all cases'
    training = [spacings[name] for name in names if name in spacings] or list(spacings.values())
    median = median_in_plane_spacing(training)
    other = [name for name, spacing in spacings.items() if cases_off_target([spacing], median)]
    return (f'  in-plane spacing: median {_rounded(np.array(median))} (of {source}); '
            f'{len(other)} of {len(spacings)} case(s) differ by more than 0.1 %'
            + (f': {shorten_list(other)}' if other else '')
            + " (target_spacing='median' resamples them to it)")


def check_volume_folder(root: Path) -> Tuple[str, List[str]]:
    """What a volume folder holds and every problem in it, without stopping at the first:
    ``(summary text, problems)`` for ``tools/check_data.py``."""
    from ..common.volume_io import slice_axis

    root = Path(root)
    try:
        description = read_volume_description(root)
    except DataError as err:
        return f'volume dataset {root}', [str(err)]
    lines = [f'volume dataset {root}',
             f'  classes ({len(description.classes)}, from dataset.json): '
             f'{", ".join(description.classes)}',
             f'  channels ({description.in_channels}): {", ".join(description.channel_names)}']
    problems: List[str] = []
    voxels = np.zeros(len(description.classes), np.int64)
    for images_dir, labels_dir in (('imagesTr', 'labelsTr'), ('imagesTs', 'labelsTs')):
        if not (root / images_dir).is_dir():
            continue
        labelled = (root / labels_dir).is_dir() or images_dir == 'imagesTr'
        try:
            cases = find_cases(description, images_dir, labels_dir if labelled else None)
        except DataError as err:
            problems.append(str(err))
            continue
        shapes, spacings, axes, placed = [], {}, [], []
        for case in cases:
            try:
                loaded = load_case(case, description)
            except DataError as err:
                problems.append(str(err))
                continue
            if loaded.label_placed:
                placed.append(case.name)
            shapes.append(loaded.reference.shape)
            spacings[case.name] = loaded.spacing
            axes.append(slice_axis(loaded.spacing))
            if loaded.label is not None and images_dir == 'imagesTr':
                voxels += np.bincount(loaded.label.ravel(), minlength=len(voxels))[:len(voxels)]
        lines.append(f'  {images_dir}: {len(cases)} case(s)'
                     + (f', shapes {min(shapes)} .. {max(shapes)}, spacing '
                        f'{_rounded(np.min(list(spacings.values()), 0))} .. '
                        f'{_rounded(np.max(list(spacings.values()), 0))}, '
                        f'slicing axis (coarsest) '
                        f'{sorted(set(axes))}' if shapes else ''))
        if spacings and images_dir == 'imagesTr':
            lines.append(_spacing_summary(cases, spacings, root))
        if placed:
            lines.append(f'  note: the labels of {len(placed)} case(s) in {labels_dir} '
                         f'({shorten_list(placed)}) cover part of their image\'s grid and are '
                         f'placed on it, background elsewhere')
        if images_dir == 'imagesTr' and cases:
            source = ('splits_final.json' if (root / 'splits_final.json').is_file() else
                      f'a seeded 5-fold split (seed {SPLIT_SEED})')
            try:
                counts = [len(split_cases(cases, split, root)) for split in ('train', 'val')]
                lines.append(f'  fold 0 ({source}): {counts[0]} train / {counts[1]} val cases')
            except DataError as err:
                problems.append(str(err))
    if voxels.sum():
        shares = ', '.join(f'{name} {100 * count / voxels.sum():.2f} %'
                           for name, count in zip(description.classes, voxels))
        lines.append(f'  training voxels per class: {shares}')
    lines += [f'problem: {problem}' for problem in problems]
    return '\n'.join(lines), problems


def convert_volume_folder(source: Union[str, Path], target: Union[str, Path],
                          file_ending: str) -> List[Path]:
    """Copy the nnU-Net folder ``source`` to ``target`` with every volume in the format of
    ``file_ending`` (``'.nii.gz'``, ``'.nrrd'``, ``'.mha'`` ...): voxels and dtype as stored, the
    geometry carried over (RAS+ affine; a NIfTI-to-NIfTI copy keeps the header; a NIfTI stored
    with an intensity scaling is written as the scaled values, float64), ``dataset.json``
    with the new ``file_ending``, every other file copied as it is. Returns the volumes written.

    The copy is built in a hidden folder beside ``target`` and renamed into place at the end, so
    an interrupted conversion leaves no half dataset; an existing, non-empty ``target`` is an
    error.
    """
    source, target = Path(source), Path(target)
    description = read_volume_description(source)
    if file_ending not in VOLUME_SUFFIXES or output_suffix(file_ending) != file_ending:
        one_file = [suffix for suffix in VOLUME_SUFFIXES if output_suffix(suffix) == suffix]
        raise DataError(f'file_ending {file_ending!r} cannot be written; choose one of '
                        f'{", ".join(one_file)}')
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f'{target} exists and is not an empty folder; convert into a new one')
    if target.resolve().is_relative_to(source.resolve()):
        raise DataError(f'{target} lies inside {source}; convert into a folder outside it')
    staging = target.with_name(f'.{target.name}.partial')
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    written: List[Path] = []
    try:
        for item in sorted(source.iterdir()):
            if item.name in VOLUME_FOLDERS and item.is_dir():
                for file in sorted(item.iterdir()):
                    if file.name.startswith('.') or not file.name.endswith(
                            description.file_ending):
                        continue  # a detached header's data file goes with its header
                    volume = read_volume(file, f'volume of {item.name}')
                    out = staging / item.name / (file.name[:-len(description.file_ending)]
                                                 + file_ending)
                    write_volume_like(volume.array, volume, out, volume.array.dtype)
                    written.append(target / item.name / out.name)
            elif item.name == 'dataset.json':
                info = json.loads(item.read_text())
                info['file_ending'] = file_ending
                (staging / item.name).write_text(json.dumps(info, indent=1) + '\n')
            elif item.is_dir():
                shutil.copytree(item, staging / item.name)
            else:
                shutil.copy2(item, staging / item.name)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
