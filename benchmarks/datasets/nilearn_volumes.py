"""'mni-tissue-volumes': grey / white matter of the ICBM152 2009 T1 template as 3-D volumes.

The same template, tissue maps and labels as 'mni-tissue' (:mod:`.nilearn_mni`: one code path,
:func:`~.nilearn_mni.read_template`, labels the voxels for both), written in the nnU-Net v2 raw
layout instead of 2-D slices. It is one brain, so the cases are axial slabs: the volume (RAS,
197 x 233 x 189 voxels of 1 mm) is cut along z into slabs of ``SLAB_SLICES`` slices over the
slices holding tissue; each slab keeps the template's affine moved to its first slice, so it
opens in its true place in a viewer. Validation is a block of slabs with a slab dropped on each
side: held-out anatomy (other slice levels), not a held-out subject.

'mni-tissue-volumes-mixed' (:func:`build_mixed`): the same slabs and split, each slab resampled
in-plane to a pixel size from :data:`MIXED_SPACINGS` in turn (as scans from scanners of other
resolutions would be), its labels recomputed from the resampled tissue maps: the set on which
training at one target spacing is measured against training on slices as stored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import nilearn_mni
from .common import (DataError, PackageArchive, block_split, describe_split, prepare_nnunet_dir,
                     write_nnunet_case, write_nnunet_dataset, write_source)
from .nilearn_mni import LICENCE, LICENCE_MEMBER, MEMBERS, PACKAGE, SPEC, VERSION

__all__ = ['PACKAGE', 'VERSION', 'SPEC', 'MEMBERS', 'LICENCE', 'LICENCE_MEMBER', 'CLASSES',
           'SLAB_SLICES', 'MIXED_SPACINGS', 'slab_starts', 'resample_in_plane', 'build',
           'build_mixed']

CLASSES = nilearn_mni.CLASSES
#: axial slices per slab (case)
SLAB_SLICES = 16
#: validation: the slabs from 55 % to 75 % of the slabs (upper brain, as 'mni-tissue'), one slab
#: dropped on each side of them, every slab kept
VAL_BLOCKS, GAP, STEP = ((0.55, 0.75),), 1, 1
#: 'mni-tissue-volumes-mixed': in-plane pixel sizes (mm) given to the slabs in turn, by position
MIXED_SPACINGS = (1.0, 0.6, 0.8)
PROCESSING = """
1. Read the three NIfTI volumes (1 mm isotropic, RAS, one 197 x 233 x 189 grid, sform code 2).
2. Labels per voxel, as 'mni-tissue' (the same function, `nilearn_mni.tissue_labels`): argmax
   over (other, grey matter, white matter) with other = 255 - gm - wm (clipped at 0; the maps
   are stored as 0..255 probabilities) -> 0 background/other, 1 grey_matter, 2 white_matter.
3. Tissue range: the axial slices holding at least {min_tissue} grey or white matter voxels
   (as 'mni-tissue'): z {first}-{last} ({count} slices). Cut into {slabs} slabs of {thickness}
   slices (z {start}-{stop}: the range, widened evenly to a whole number of slabs and kept inside
   the volume); each slab is one case `mni_slab_zNNN` (NNN its first slice), {shape} voxels
   (x, y, z).
4. Images: the T1 template voxels as stored ({dtype}, no rescaling: the training code normalises
   per volume). Labels: uint8. nnU-Net v2 raw layout: `imagesTr/<case>_0000.nii.gz`,
   `labelsTr/<case>.nii.gz`, `dataset.json` (channel `T1`), `splits_final.json`.
5. Affine: the template's, with the translation of the slab's first slice (so each slab opens in
   its true position in a viewer); NIfTI qform and sform both set to it (code 2, aligned),
   zooms 1 x 1 x 1, units mm.
6. {split} It is one template brain: validation is held-out anatomy (other slice levels), not
   another subject.
   Slabs: {roles}.
"""

MIXED_PROCESSING = """7. Mixed spacings ('mni-tissue-volumes-mixed'): each slab is resampled along x and y to
   the pixel size its position gives ({spacings}) over the same extent (new voxel i at old voxel
   (i + 0.5) * step - 0.5, step = old voxels per new one; linear interpolation,
   scipy.ndimage.affine_transform, edges repeated), T1 and the two tissue maps alike; the labels
   are step 2's argmax of the resampled maps; the affine's x and y columns scaled by the step and
   its origin moved to the new first voxel. T1 is stored as float32.
"""


def slab_starts(used: List[int], thickness: int, depth: int) -> List[int]:
    """First slices of the slabs of ``thickness`` covering the slices ``used`` (first to last):
    as many slabs as it takes, the range widened evenly on both sides, kept in ``0..depth``."""
    if not used:
        raise DataError(f'no axial slice holds {nilearn_mni.MIN_TISSUE_PIXELS} tissue voxels')
    first, last = min(used), max(used)
    count = -(-(last - first + 1) // thickness)
    if count * thickness > depth:
        count = depth // thickness
    start = first - (count * thickness - (last - first + 1)) // 2
    start = min(max(start, 0), depth - count * thickness)
    return [start + i * thickness for i in range(count)]


def resample_in_plane(array: np.ndarray, affine: np.ndarray, spacing: float
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """``array`` (x, y, z; 1 mm voxels) resampled along x and y to ``spacing`` mm by linear
    interpolation over the same extent (voxel centres placed as in an image resize), with its
    new affine."""
    from scipy.ndimage import affine_transform

    shape = tuple(max(1, int(round(n / spacing))) for n in array.shape[:2]) + array.shape[2:]
    # new voxel i lies at old voxel (i + 0.5) * step - 0.5, step = the old voxels per new one
    steps = [array.shape[axis] / shape[axis] for axis in range(2)] + [1.0]
    offset = [0.5 * step - 0.5 for step in steps]
    resampled = affine_transform(np.asarray(array, np.float32), np.diag(steps), offset, shape,
                                 order=1, mode='nearest')
    moved = affine.copy()
    moved[:3, :3] = affine[:3, :3] @ np.diag(steps)
    moved[:3, 3] = (affine @ [*offset, 1])[:3]
    return resampled, moved


def build(package_file: Path, out_dir: Path) -> Dict[str, int]:
    """Write the nnU-Net v2 raw layout to ``out_dir``; return the slabs (cases) per split."""
    return _build(package_file, out_dir, 'mni-tissue-volumes', None)


def build_mixed(package_file: Path, out_dir: Path) -> Dict[str, int]:
    """'mni-tissue-volumes-mixed': :func:`build`'s slabs, slab ``i`` resampled in-plane to
    ``MIXED_SPACINGS[i % 3]`` mm, labels from the resampled tissue maps."""
    return _build(package_file, out_dir, 'mni-tissue-volumes-mixed', MIXED_SPACINGS)


def _build(package_file: Path, out_dir: Path, dataset: str,
           spacings: Optional[Sequence[float]]) -> Dict[str, int]:
    archive = PackageArchive(package_file, SPEC)
    template = nilearn_mni.read_template(archive)
    used = nilearn_mni.tissue_slices(template.labels)
    starts = slab_starts(used, SLAB_SLICES, template.labels.shape[2])
    splits = block_split(range(len(starts)), VAL_BLOCKS, GAP, STEP)
    name = {i: f'mni_slab_z{z:03d}' for i, z in enumerate(starts)}
    cases = {split: [name[i] for i in indices] for split, indices in splits.items()}
    out_dir = Path(out_dir)
    prepare_nnunet_dir(out_dir, [case for names in cases.values() for case in names])
    voxels = {split: np.zeros(len(CLASSES), np.int64) for split in splits}
    for split, indices in splits.items():
        for i in indices:
            z = starts[i]
            part = slice(z, z + SLAB_SLICES)
            affine = template.affine.copy()
            affine[:3, 3] = (template.affine @ [0, 0, z, 1])[:3]
            image, label = template.t1[:, :, part], template.labels[:, :, part]
            if spacings:
                spacing = spacings[i % len(spacings)]
                image, moved = resample_in_plane(image, affine, spacing)
                label = nilearn_mni.tissue_labels(
                    resample_in_plane(template.gm[:, :, part], affine, spacing)[0],
                    resample_in_plane(template.wm[:, :, part], affine, spacing)[0])
                affine = moved
            write_nnunet_case(out_dir, name[i], image, label, affine, units='mm',
                              code='aligned')
            voxels[split] += np.bincount(label.ravel(), minlength=len(CLASSES))
    counts = {split: len(names) for split, names in cases.items()}
    write_nnunet_dataset(out_dir, dataset, CLASSES, ['T1'], cases,
                         'Grey/white matter of the ICBM152 2009 T1 template, axial slabs of '
                         f'{SLAB_SLICES} slices (one template brain: held-out anatomy, not '
                         'held-out subjects)', LICENCE,
                         f'{SPEC.pin}: {", ".join(MEMBERS.values())}')
    role = {i: split for split, indices in splits.items() for i in indices}
    roles = ', '.join(f'z {z}-{z + SLAB_SLICES - 1} {role.get(i, "dropped")}'
                      for i, z in enumerate(starts))
    shape = template.labels.shape[:2] + (SLAB_SLICES,)
    processing = PROCESSING.format(
        min_tissue=nilearn_mni.MIN_TISSUE_PIXELS, first=min(used), last=max(used),
        count=len(used), slabs=len(starts), thickness=SLAB_SLICES, start=starts[0],
        stop=starts[-1] + SLAB_SLICES - 1, shape=' x '.join(map(str, shape)),
        dtype=template.t1.dtype, roles=roles,
        split=describe_split(f'slab position (z; slabs of {SLAB_SLICES} slices)', VAL_BLOCKS,
                             GAP, STEP))
    size = ' x '.join(map(str, shape)) + ' voxels (x, y, z)'
    if spacings:
        given = ', '.join(f'z {z}: {spacings[i % len(spacings)]} mm' for i, z in enumerate(starts))
        processing += MIXED_PROCESSING.format(spacings=given)
        size = f'{size} before resampling; in-plane pixel sizes {", ".join(map(str, spacings))} mm'
    shares = {f'{split} voxels': ' / '.join(f'{c} {100.0 * n / max(total.sum(), 1):.2f} %'
                                            for c, n in zip(CLASSES, total))
              for split, total in voxels.items()}
    write_source(out_dir, f'{dataset}: ICBM152 2009 grey/white matter, axial slabs '
                 f'(nnU-Net v2 raw layout{", mixed in-plane spacings" if spacings else ""})',
                 SPEC, list(MEMBERS.values()), LICENCE, archive.read_text(LICENCE_MEMBER),
                 processing, dict(counts, dropped=len(starts) - sum(counts.values()),
                                  classes=len(CLASSES), size=size, **shares))
    return counts
