"""NIfTI volumes in and out (nibabel), with errors that name the file and what was expected.

:func:`read_volume` keeps the stored dtype and the file's affine and header, so an output written
with :func:`write_volume_like` opens aligned with its input in ITK-SNAP, 3D Slicer or FSLeyes.
Writes go to a temporary file renamed into place: an interrupted write never leaves a truncated
``.nii.gz`` where a good one was.
"""
from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Tuple, Union

import numpy as np

from .io import DataError

__all__ = ['NIFTI_SUFFIXES', 'Volume', 'is_nifti', 'nifti_stem', 'read_volume',
           'write_volume_like', 'slice_axis', 'SLICE_AXIS_RULES']

NIFTI_SUFFIXES = ('.nii.gz', '.nii')
PathLike = Union[str, Path]
#: ``slice_axis='coarsest'``: the axis with the largest voxel spacing (ties: the last of them)
SLICE_AXIS_RULES = ('coarsest',)


def is_nifti(path: PathLike) -> bool:
    """Whether the file name ends in .nii or .nii.gz."""
    return str(path).endswith(NIFTI_SUFFIXES)


def nifti_stem(path: PathLike) -> str:
    """``case_0000.nii.gz`` -> ``case_0000``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return Path(path).stem


@dataclass(frozen=True)
class Volume:
    """A volume as stored: the voxel array (``(X, Y, Z)``, or ``(X, Y, Z, C)`` for a 4-D file), its
    4 x 4 voxel-to-world affine, its nibabel header and the file it came from."""

    array: np.ndarray
    affine: np.ndarray
    header: Any
    path: Path

    @property
    def spacing(self) -> Tuple[float, ...]:
        """Voxel sides along the three spatial axes, in the header's units."""
        return tuple(float(z) for z in self.header.get_zooms()[:3])

    @property
    def shape(self) -> Tuple[int, ...]:
        """The spatial shape ``(X, Y, Z)``."""
        return tuple(self.array.shape[:3])


def read_volume(path: PathLike, what: str = 'volume') -> Volume:
    """Read a NIfTI file (``.nii`` or ``.nii.gz``) with nibabel, fully, checking it decodes.

    Args:
        path: the file.
        what: what it is, for error messages ("image of case 'la_003'", "label").
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.is_file():
        raise DataError(f'{what} {path} not found')
    if not is_nifti(path):
        raise DataError(f'{what} {path} is not a NIfTI file; expected {" or ".join(NIFTI_SUFFIXES)}')
    try:
        image = nib.load(str(path))
        # np.asanyarray(dataobj) reads every byte now: a truncated .nii.gz fails here, not later
        array = np.asanyarray(image.dataobj)
    except (ImageFileError, EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as err:
        raise DataError(f'{what} {path} cannot be read as NIfTI (truncated or not a NIfTI file?): '
                        f'{type(err).__name__}: {err}') from None
    if array.ndim < 3:
        raise DataError(f'{what} {path} has {array.ndim} dimension(s) {array.shape}; a volume has '
                        f'3 (X, Y, Z), or 4 with channels last')
    return Volume(array, np.asarray(image.affine, np.float64), image.header, path)


def write_volume_like(array: np.ndarray, reference: Volume, path: PathLike,
                      dtype: Any = np.uint8) -> Path:
    """Write ``array`` (the reference's spatial shape) as NIfTI with the reference's affine and
    header, stored as ``dtype`` (no intensity scaling), atomically; returns the path."""
    import nibabel as nib

    path = Path(path)
    if tuple(array.shape[:3]) != reference.shape:
        raise ValueError(f'cannot write {path}: array shape {array.shape} differs from the '
                         f'reference {reference.path} {reference.shape}')
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    image = nib.Nifti1Image(np.asarray(array).astype(dtype), reference.affine, header)
    image.header.set_slope_inter(1.0, 0.0)  # labels are stored as they are, never rescaled
    image.header['cal_min'], image.header['cal_max'] = 0, float(np.max(array)) if array.size else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = '.nii.gz' if str(path).endswith('.nii.gz') else '.nii'
    temporary = path.with_name(f'.{nifti_stem(path)}.{os.getpid()}.partial{suffix}')
    try:
        nib.save(image, str(temporary))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def slice_axis(spacing: Sequence[float], rule: Union[str, int] = 'coarsest') -> int:
    """The array axis 2-D slices are taken along: an index 0..2, or the rule 'coarsest' (the
    largest spacing, as nnU-Net's 2-D configuration does; ties go to the last axis, the axial one
    of RAS volumes)."""
    if isinstance(rule, (int, np.integer)) and not isinstance(rule, bool):
        if not 0 <= int(rule) <= 2:
            raise ValueError(f'slice_axis must be 0, 1, 2 or one of {SLICE_AXIS_RULES}, got {rule}')
        return int(rule)
    if rule not in SLICE_AXIS_RULES:
        raise ValueError(f'slice_axis must be 0, 1, 2 or one of {SLICE_AXIS_RULES}, got {rule!r}')
    spacing = [float(s) for s in spacing[:3]]
    largest = max(spacing)
    return max(axis for axis, value in enumerate(spacing) if np.isclose(value, largest, rtol=1e-3))
