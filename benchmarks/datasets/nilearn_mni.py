"""'mni-tissue': grey / white matter segmentation of axial slices of the ICBM152 2009 MRI template.

The nilearn wheel ships the ICBM152 2009 T1-weighted template (whole head, 1 mm, 197 x 233 x
189 voxels) and its grey and white matter probability maps. Each voxel is labelled with the most
probable of (other, grey matter, white matter), "other" being what the two maps leave (CSF,
skull, background). Axial slices are 197 wide and 233 high: neither a multiple of 32.

:func:`read_template` (the volumes, the labels of :func:`tissue_labels`) and
:func:`tissue_slices` are shared with 'mni-tissue-volumes' (:mod:`.nilearn_volumes`, axial
slabs in the nnU-Net layout).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .common import (DataError, PackageArchive, PackageSpec, axial, block_split, describe_split,
                     to_ras, to_uint8, write_dataset_json, write_segmentation_sample,
                     write_source)

PACKAGE = 'nilearn'
VERSION = '0.14.1'
SPEC = PackageSpec(PACKAGE, VERSION, 'wheel')
_DATA = 'nilearn/datasets/data/'
MEMBERS = {'t1': _DATA + 'mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz',
           'gm': _DATA + 'mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz',
           'wm': _DATA + 'mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz'}
LICENCE_MEMBER = f'nilearn-{VERSION}.dist-info/licenses/LICENSE'
LICENCE = ('BSD-3-Clause (nilearn); the ICBM152 2009 template and tissue maps: (c) 1993-2009 '
           'Louis Collins, McConnell Brain Imaging Centre, MNI, McGill University, free use, '
           'copying and distribution with the copyright notice')
CLASSES = ('background', 'grey_matter', 'white_matter')
#: an axial slice is used when at least this many of its pixels are grey or white matter
MIN_TISSUE_PIXELS = 1000
#: validation: the slices from 55 % to 75 % of the used range (upper brain), 4 dropped on each
#: side of it; every 2nd slice of both splits is kept (neighbouring 1 mm slices are near copies)
VAL_BLOCKS, GAP, STEP = ((0.55, 0.75),), 4, 2
PROCESSING = f"""
1. Read the three NIfTI volumes (1 mm isotropic, RAS, one 197 x 233 x 189 grid).
2. Labels per voxel: argmax over (other, grey matter, white matter) with other = 255 - gm - wm
   (clipped at 0; the maps are stored as 0..255 probabilities) -> 0 background/other,
   1 grey_matter, 2 white_matter.
3. Axial slices (rows anterior -> posterior, columns left -> right) holding at least
   {MIN_TISSUE_PIXELS} tissue pixels; images are the T1 template scaled to 8 bits (0 stays 0,
   the 99.5th percentile of non-zero voxels -> 255); 233 x 197 pixels, not multiples of 32.
4. {describe_split('axial slice position (z)', VAL_BLOCKS, GAP, STEP)} It is one
   template brain: validation is held-out anatomy (other slice levels), not another subject.
"""


@dataclass(frozen=True)
class Template:
    """The template on its RAS grid: T1 voxels as stored, tissue labels, the voxel-to-mm affine."""

    t1: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    #: the grey and white matter probability maps (0..255) the labels come from
    gm: Optional[np.ndarray] = None
    wm: Optional[np.ndarray] = None


def tissue_labels(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """Class index per voxel (uint8): the argmax over (other, grey matter, white matter) of the
    0..255 probability maps, other = 255 - gm - wm clipped at 0 (ties go to the lower index)."""
    gm, wm = np.asarray(gm, np.float32), np.asarray(wm, np.float32)
    other = np.clip(255.0 - gm - wm, 0.0, None)
    return np.argmax(np.stack([other, gm, wm]), axis=0).astype(np.uint8)


def read_template(archive: PackageArchive) -> Template:
    """The three members reoriented to RAS (one 3-D grid, else a DataError) and labelled."""
    volumes = {key: to_ras(archive.read_nifti(member), f'{archive.path}: {member}')
               for key, member in MEMBERS.items()}
    shapes = {key: v.array.shape for key, v in volumes.items()}
    if len(set(shapes.values())) != 1 or len(shapes['t1']) != 3 or \
            any(not np.allclose(v.affine, volumes['t1'].affine, atol=1e-4)
                for v in volumes.values()):
        raise DataError(f'{archive.path}: the template and tissue maps should share one 3-D '
                        f'grid, got {shapes}')
    return Template(volumes['t1'].array, tissue_labels(volumes['gm'].array, volumes['wm'].array),
                    volumes['t1'].affine, volumes['gm'].array, volumes['wm'].array)


def tissue_slices(labels: np.ndarray) -> List[int]:
    """The axial slices (z) holding at least ``MIN_TISSUE_PIXELS`` grey or white matter voxels."""
    per_slice = np.count_nonzero(labels, axis=(0, 1))
    return [int(z) for z in np.nonzero(per_slice >= MIN_TISSUE_PIXELS)[0]]


def build(package_file: Path, out_dir: Path) -> Dict[str, int]:
    """Write the segmentation layout to ``out_dir``; return the slices per split."""
    archive = PackageArchive(package_file, SPEC)
    template = read_template(archive)
    labels = template.labels
    image = to_uint8(template.t1)
    used = tissue_slices(labels)
    splits = block_split(used, VAL_BLOCKS, GAP, STEP)
    out_dir = Path(out_dir)
    for split, slices in splits.items():
        for z in slices:
            write_segmentation_sample(out_dir, split, f'mni_axial_z{z:03d}', axial(image, z),
                                      axial(labels, z))
    counts = {split: len(slices) for split, slices in splits.items()}
    height, width = axial(labels, used[0]).shape
    write_dataset_json(out_dir, 'mni-tissue', CLASSES, ['T1'], counts,
                       'Grey/white matter of axial slices of the ICBM152 2009 T1 template',
                       LICENCE, f'{SPEC.pin}: {", ".join(MEMBERS.values())}')
    write_source(out_dir, 'mni-tissue: ICBM152 2009 grey/white matter', SPEC,
                 list(MEMBERS.values()), LICENCE, archive.read_text(LICENCE_MEMBER), PROCESSING,
                 dict(counts, classes=len(CLASSES), size=f'{height}x{width} (HxW)'))
    return counts
