"""Medical volumes in and out, with errors that name the file and what was expected.

NIfTI (``.nii.gz``, ``.nii``) is read and written with nibabel; NRRD (``.nrrd``, ``.nhdr``) and
MetaImage (``.mha``, ``.mhd``) with SimpleITK, the reader nnU-Net's ``SimpleITKIO`` uses for them.
Every volume comes back the same way: the voxel array indexed ``(X, Y, Z)`` (``(X, Y, Z, C)`` with
channels) and a 4 x 4 voxel-to-world affine in RAS+ millimetres, nibabel's convention (ITK's LPS
origin and direction are converted), so grids of different formats compare and slicing rules
apply alike. :func:`write_volume_like` writes an output in its reference's format with the
reference's geometry (the NIfTI header itself; ITK's origin, spacing and direction), so it opens
aligned with its input in ITK-SNAP, 3D Slicer or FSLeyes. Writes go to a temporary file renamed
into place: an interrupted write never leaves a truncated volume where a good one was.
"""
from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np

from .io import DataError

__all__ = ['NIFTI_SUFFIXES', 'ITK_SUFFIXES', 'VOLUME_SUFFIXES', 'Volume', 'ItkGeometry',
           'volume_suffix', 'is_volume_file', 'volume_stem', 'output_suffix', 'read_volume',
           'read_spacing',
           'write_volume', 'write_volume_like', 'place_on_grid', 'slice_axis', 'SLICE_AXIS_RULES']

NIFTI_SUFFIXES = ('.nii.gz', '.nii')
#: read with SimpleITK; ``.nhdr`` / ``.mhd`` keep their voxels in a separate data file
ITK_SUFFIXES = ('.nrrd', '.nhdr', '.mha', '.mhd')
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
#: an output for a detached-header input is written as the one-file form of its format: a
#: header renamed into place would name a data file that is not there
_ONE_FILE_FORM = {'.nhdr': '.nrrd', '.mhd': '.mha'}
PathLike = Union[str, Path]
#: ``slice_axis='coarsest'``: the axis with the largest voxel spacing (ties: the last of them)
SLICE_AXIS_RULES = ('coarsest',)
#: ITK's world axes are LPS, NIfTI's (and this module's affines) RAS: x and y change sign
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def volume_suffix(path: PathLike) -> Optional[str]:
    """The volume format suffix ``path`` ends in, as the name spells it (``'.nii.gz'``,
    ``'.nrrd'`` ...; matched case-insensitively), or ``None``."""
    name = Path(path).name
    return next((name[-len(suffix):] for suffix in VOLUME_SUFFIXES
                 if name.lower().endswith(suffix)), None)


def _format(path: PathLike) -> Optional[str]:
    suffix = volume_suffix(path)
    return suffix.lower() if suffix else None


def is_volume_file(path: PathLike) -> bool:
    """Whether the file name ends in a volume suffix (:data:`VOLUME_SUFFIXES`)."""
    return volume_suffix(path) is not None


def volume_stem(path: PathLike) -> str:
    """``case_0000.nii.gz`` -> ``case_0000`` (``case.nrrd`` -> ``case``)."""
    name = Path(path).name
    suffix = volume_suffix(path)
    return name[:-len(suffix)] if suffix else Path(path).stem


def output_suffix(suffix: str) -> str:
    """The suffix an output written for an input of ``suffix`` gets: the same, except the
    detached-header forms (``.nhdr`` -> ``.nrrd``, ``.mhd`` -> ``.mha``)."""
    return _ONE_FILE_FORM.get(suffix.lower(), suffix)


@dataclass(frozen=True)
class ItkGeometry:
    """Where an ITK image lies, as SimpleITK reports it: voxel spacing, LPS origin and direction
    (row-major 3 x 3) of the three spatial axes."""

    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]


@dataclass(frozen=True)
class Volume:
    """A volume as stored: the voxel array (``(X, Y, Z)``, or ``(X, Y, Z, C)`` with channels), its
    4 x 4 voxel-to-world affine (RAS+), its header (nibabel's for NIfTI, an
    :class:`ItkGeometry` for NRRD and MetaImage) and the file it came from."""

    array: np.ndarray
    affine: np.ndarray
    header: Any
    path: Path

    @property
    def spacing(self) -> Tuple[float, ...]:
        """Voxel sides along the three spatial axes, in the header's units."""
        if isinstance(self.header, ItkGeometry):
            return tuple(self.header.spacing[:3])
        return tuple(float(z) for z in self.header.get_zooms()[:3])

    @property
    def shape(self) -> Tuple[int, ...]:
        """The spatial shape ``(X, Y, Z)``."""
        return tuple(self.array.shape[:3])


def read_volume(path: PathLike, what: str = 'volume') -> Volume:
    """Read a volume file (:data:`VOLUME_SUFFIXES`) fully, checking it decodes.

    Args:
        path: the file.
        what: what it is, for error messages ("image of case 'la_003'", "label").
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f'{what} {path} not found')
    suffix = _format(path)
    if suffix is None:
        raise DataError(f'{what} {path} is not a volume file; expected one of '
                        f'{", ".join(VOLUME_SUFFIXES)}')
    volume = _read_nifti(path, what) if suffix in NIFTI_SUFFIXES else _read_itk(path, what)
    if volume.array.ndim < 3:
        raise DataError(f'{what} {path} has {volume.array.ndim} dimension(s) '
                        f'{volume.array.shape}; a volume has 3 (X, Y, Z), or 4 with channels last')
    return volume


def read_spacing(path: PathLike, what: str = 'volume') -> Tuple[float, float, float]:
    """The voxel spacing of a volume file from its header alone (the voxels are not read)."""
    path = Path(path)
    if _format(path) in ITK_SUFFIXES:
        sitk = _simpleitk()
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
            spacing = reader.GetSpacing()
        except RuntimeError:
            spacing = ()
    elif _format(path) in NIFTI_SUFFIXES:
        import nibabel as nib
        try:
            spacing = nib.load(str(path)).header.get_zooms()
        except Exception:  # noqa: BLE001 - the full read below names the problem
            spacing = ()
    else:
        spacing = ()
    if len(spacing) < 3:  # unreadable, not a volume, or 2-D: the full read names the problem
        return read_volume(path, what).spacing  # type: ignore[return-value]
    return tuple(float(s) for s in spacing[:3])  # type: ignore[return-value]


def _read_nifti(path: Path, what: str) -> Volume:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    try:
        image = nib.load(str(path))
        # np.asanyarray(dataobj) reads every byte now: a truncated .nii.gz fails here, not later
        array = np.asanyarray(image.dataobj)
    except (ImageFileError, EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as err:
        raise DataError(f'{what} {path} cannot be read as NIfTI (truncated or not a NIfTI file?): '
                        f'{type(err).__name__}: {err}') from None
    return Volume(array, np.asarray(image.affine, np.float64), image.header, path)


def _simpleitk():
    try:
        import SimpleITK
    except ImportError:  # pragma: no cover - a dependency of the package
        raise DataError('NRRD and MetaImage volumes are read with SimpleITK: pip install '
                        'SimpleITK') from None
    return SimpleITK


def _read_itk(path: Path, what: str) -> Volume:
    sitk = _simpleitk()
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:  # ITK's exceptions reach Python as RuntimeError
        first = str(err).strip().splitlines()[-1] if str(err).strip() else ''
        raise DataError(f'{what} {path} cannot be read as {volume_suffix(path)} (truncated, or '
                        f'its data file missing?): {first}') from None
    dimension = image.GetDimension()
    if dimension < 3:
        raise DataError(f'{what} {path} is a {dimension}-D image of size {image.GetSize()}; a '
                        f'volume has 3 spatial dimensions (X, Y, Z)')
    # SimpleITK's arrays are (Z, Y, X[, components]); reversing the image axes gives nibabel's
    # (X, Y, Z): index i along x is the first array axis in both. A 4-D image's fourth axis
    # (time, or channels not stored as vector pixels) becomes the channel axis, as in NIfTI.
    array = sitk.GetArrayFromImage(image)
    array = array.transpose(*range(dimension)[::-1], *range(dimension, array.ndim))
    spacing = tuple(float(s) for s in image.GetSpacing()[:3])
    origin = tuple(float(o) for o in image.GetOrigin()[:3])
    direction = np.asarray(image.GetDirection(), np.float64).reshape(dimension, dimension)[:3, :3]
    geometry = ItkGeometry(spacing, origin, tuple(direction.ravel().tolist()))
    return Volume(array, _itk_affine(geometry), geometry, path)


def _itk_affine(geometry: ItkGeometry) -> np.ndarray:
    """The RAS+ voxel-to-world affine of an ITK geometry (LPS origin and direction)."""
    direction = np.asarray(geometry.direction, np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(geometry.spacing)
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(geometry.origin, np.float64)
    return affine


def _itk_geometry(affine: np.ndarray) -> ItkGeometry:
    """The ITK geometry of a RAS+ affine: spacing from its column lengths, LPS direction and
    origin."""
    affine = np.asarray(affine, np.float64)
    linear = _LPS_TO_RAS @ affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing == 0):
        raise ValueError(f'affine {affine.tolist()} has an axis of length 0')
    return ItkGeometry(tuple(spacing.tolist()), tuple((_LPS_TO_RAS @ affine[:3, 3]).tolist()),
                       tuple((linear / spacing).ravel().tolist()))


def _write_atomically(path: Path, save: Callable[[Path], Any]) -> Path:
    """Call ``save(temporary_path)`` and rename the file into ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = volume_suffix(path) or path.suffix
    temporary = path.with_name(f'.{volume_stem(path)}.{os.getpid()}.partial{suffix}')
    try:
        save(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def _save_itk(array: np.ndarray, geometry: ItkGeometry, path: Path) -> Path:
    sitk = _simpleitk()
    if _format(path) in _ONE_FILE_FORM:
        raise ValueError(f'cannot write {path}: write the one-file form '
                         f'({_ONE_FILE_FORM[_format(path)]}) instead')
    array = np.asarray(array)
    # (X, Y, Z[, C]) -> SimpleITK's (Z, Y, X[, C]); channels become vector pixels
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose((2, 1, 0, 3)[:array.ndim])),
                                   isVector=array.ndim == 4)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return _write_atomically(path, lambda temporary: sitk.WriteImage(image, str(temporary),
                                                                     useCompression=True))


def write_volume(array: np.ndarray, affine: np.ndarray, path: PathLike) -> Path:
    """Write an ``(X, Y, Z)`` or ``(X, Y, Z, C)`` array with a RAS+ ``affine`` as any format of
    :data:`VOLUME_SUFFIXES` (by ``path``'s suffix; channels as NIfTI's 4th axis or ITK's vector
    pixels), dtype kept, atomically; returns the path."""
    array = np.asarray(array)
    if array.ndim not in (3, 4):
        raise ValueError(f'cannot write {path}: expected an (X, Y, Z[, C]) array, got '
                         f'{array.shape}')
    return _save(array, np.asarray(affine, np.float64), None, Path(path))


def write_volume_like(array: np.ndarray, reference: Volume, path: PathLike,
                      dtype: Any = np.uint8) -> Path:
    """Write ``array`` (the reference's spatial shape) in the format ``path`` names with the
    reference's geometry (NIfTI: its affine and header; NRRD / MetaImage: its origin, spacing and
    direction), stored as ``dtype`` (no intensity scaling), atomically; returns the path."""
    if tuple(array.shape[:3]) != reference.shape:
        raise ValueError(f'cannot write {path}: array shape {array.shape} differs from the '
                         f'reference {reference.path} {reference.shape}')
    return _save(np.asarray(array).astype(dtype), reference.affine, reference.header, Path(path))


def _save(array: np.ndarray, affine: np.ndarray, header: Any, path: Path) -> Path:
    """Write ``array`` as ``path``'s format: ITK formats with ``header``'s geometry when it is an
    :class:`ItkGeometry` (else ``affine``'s), NIfTI with ``affine`` and a copy of ``header`` when
    it is a NIfTI header (else a new one), dtype as it is, no intensity scaling."""
    import nibabel as nib

    suffix = _format(path)
    if suffix is None:
        raise ValueError(f'cannot write {path}: not a volume suffix ({", ".join(VOLUME_SUFFIXES)})')
    if suffix in ITK_SUFFIXES:
        try:
            geometry = header if isinstance(header, ItkGeometry) else _itk_geometry(affine)
        except ValueError as err:
            raise ValueError(f'cannot write {path}: {err}') from None
        return _save_itk(array, geometry, path)
    # a NIfTI output of an ITK input (or of an affine alone): the affine is all that carries over
    header = header.copy() if isinstance(header, nib.Nifti1Header) else nib.Nifti1Header()
    header.set_data_dtype(array.dtype)
    image = nib.Nifti1Image(array, affine, header)
    image.header.set_slope_inter(1.0, 0.0)  # values are stored as they are, never rescaled
    if array.size:  # the display range viewers open it with
        image.header['cal_min'] = float(np.min(array))
        image.header['cal_max'] = float(np.max(array))
    return _write_atomically(path, lambda temporary: nib.save(image, str(temporary)))


def place_on_grid(array: np.ndarray, affine: np.ndarray, reference_affine: np.ndarray,
                  reference_shape: Sequence[int], tolerance: float = 1e-3) -> np.ndarray:
    """``array`` (``(X, Y, Z[, ...])`` on ``affine``'s grid) moved onto the reference grid, which
    has the same voxel axes and lies a whole number of voxels away (a crop of it, a padded copy,
    a shifted one): reference voxels outside ``array`` are 0, voxels of ``array`` outside the
    reference grid are left out. No interpolation: anything else raises ValueError saying what
    differs.

    Args:
        tolerance: how far (world units; voxels for the shift) the axes and the shift may be from
            equal and whole.
    """
    affine, reference_affine = np.asarray(affine, float), np.asarray(reference_affine, float)
    if not np.allclose(affine[:3, :3], reference_affine[:3, :3], atol=tolerance):
        raise ValueError(f'voxel axes {np.round(affine[:3, :3], 4).tolist()} differ from the '
                         f'reference\'s {np.round(reference_affine[:3, :3], 4).tolist()}')
    shift = np.linalg.solve(reference_affine[:3, :3], affine[:3, 3] - reference_affine[:3, 3])
    if not np.allclose(shift, np.round(shift), atol=tolerance):
        raise ValueError(f'the grid is shifted by {np.round(shift, 4).tolist()} voxels from the '
                         f'reference, not a whole number')
    shift = np.round(shift).astype(int)
    placed = np.zeros(tuple(reference_shape[:3]) + array.shape[3:], array.dtype)
    source, target = [], []
    for axis in range(3):
        start, stop = shift[axis], shift[axis] + array.shape[axis]
        low, high = max(start, 0), min(stop, placed.shape[axis])
        if low >= high:
            raise ValueError(f'the grid does not overlap the reference (shifted by '
                             f'{shift.tolist()} voxels)')
        target.append(slice(low, high))
        source.append(slice(low - start, high - start))
    placed[tuple(target)] = array[tuple(source)]
    return placed


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
