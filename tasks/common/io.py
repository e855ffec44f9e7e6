"""Reading image files as arrays, and finding the image files a user names.

Every problem is reported as :class:`DataError` naming the file and what was expected, so a bad
dataset stops before (or exactly where) it would otherwise fail obscurely. Images keep their
stored dtype (8/16-bit, float); turning them into network inputs is
:mod:`tasks.common.intensity`'s job.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

__all__ = ['DataError', 'IMAGE_SUFFIXES', 'TIFF_SUFFIXES', 'read_image', 'image_size',
           'to_channels', 'LUMINANCE_WEIGHTS', 'list_images', 'expand_inputs', 'shorten_list']

IMAGE_SUFFIXES = ('.png', '.tif', '.tiff', '.jpg', '.jpeg')
TIFF_SUFFIXES = ('.tif', '.tiff')


class DataError(ValueError):
    """A dataset file or folder is missing, unreadable or holds unexpected values."""


def shorten_list(items: Sequence[object], limit: int = 5) -> str:
    """``'a, b, c and 7 more'``: the first ``limit`` items of a list for an error message."""
    shown = ', '.join(str(item) for item in items[:limit])
    return shown + (f' and {len(items) - limit} more' if len(items) > limit else '')


def list_images(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> List[Path]:
    """Files in ``folder`` with one of ``suffixes`` (case-insensitive), sorted by name."""
    suffixes = tuple(suffix.lower() for suffix in suffixes)
    # by the name's ending, not Path.suffix: '.nii.gz' is one suffix here
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and path.name.lower().endswith(suffixes))


def expand_inputs(inputs: Sequence[str], suffixes: Sequence[str] = IMAGE_SUFFIXES) -> List[Path]:
    """Files named, files with ``suffixes`` inside named folders, and glob matches, in order.

    Raises FileNotFoundError naming every input that matched nothing.
    """
    found: List[Path] = []
    missing: List[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = list_images(path, suffixes)
        elif path.is_file():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        if not matches:
            missing.append(item)
        found.extend(match for match in matches if match not in found)
    if missing:
        raise FileNotFoundError(f'no image found for input(s) {missing} (files, folders holding '
                                f'{", ".join(suffixes)} files, or glob patterns)')
    return found


def _read_raw(path: Path) -> np.ndarray:
    """Decode a file as stored (8/16-bit, float, gray or colour), or raise DataError."""
    if not path.is_file():
        raise DataError(f'{path} not found')
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile
            array = tifffile.imread(str(path))
        else:
            import cv2
            array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if array is not None and array.ndim == 3 and array.shape[2] in (3, 4):
                # cv2 decodes colour as BGR(A)
                to_rgb = cv2.COLOR_BGR2RGB if array.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
                array = cv2.cvtColor(array, to_rgb)
    except Exception as err:  # tifffile raises many types for damaged files
        raise DataError(f'cannot read {path}: {type(err).__name__}: {err}') from err
    if array is None or array.size == 0:
        raise DataError(f'cannot read {path}: not a valid image file (corrupt or truncated?)')
    return np.asarray(array)


def read_image(path: Path) -> np.ndarray:
    """Read an image as ``(H, W, C)`` in its stored dtype (uint8, uint16, float ...)."""
    array = _read_raw(Path(path))
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # planar TIFF (C, H, W)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise DataError(f'{path} has shape {array.shape}; expected a 2D image, gray (H, W) or '
                        f'with channels (H, W, C), not a stack')
    return array


def image_size(array: np.ndarray) -> Tuple[int, int]:
    """``(height, width)`` of an image or mask array."""
    return int(array.shape[0]), int(array.shape[1])


#: RGB -> luminance (ITU-R BT.601), for images and for RGB normalisation statistics alike
LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def to_channels(image: np.ndarray, channels: int, path: Path) -> np.ndarray:
    """Match the model's input channels: gray is repeated; RGB(A) becomes luminance for 1.

    Args:
        image: ``(H, W, C)`` as read by :func:`read_image`.
        channels: channels the model takes.
        path: the file, named in the error when the channels cannot be matched.
    """
    have = image.shape[2]
    if have == 4 and channels != 4:
        image, have = image[..., :3], 3  # drop alpha
    if have == channels:
        return image
    if have == 1:
        return np.repeat(image, channels, axis=2)
    if have == 3 and channels == 1:
        return (image.astype(np.float32) @ LUMINANCE_WEIGHTS)[:, :, None].astype(image.dtype)
    raise DataError(f'{path} has {have} channels but the model takes {channels}; '
                    f'set in_channels to {have} or convert the images')
