"""Reading images and masks, and pairing them in the ``{split}/images``, ``{split}/masks`` layout.

Every problem is reported as :class:`DataError` naming the file(s) and what was expected, so a
bad dataset stops before (or exactly where) it would otherwise fail obscurely.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

__all__ = ['DataError', 'IMAGE_SUFFIXES', 'MASK_SUFFIXES', 'SamplePaths', 'read_image',
           'read_mask', 'image_size', 'list_images', 'pair_samples', 'check_mask_values',
           'to_channels']

IMAGE_SUFFIXES = ('.png', '.tif', '.tiff', '.jpg', '.jpeg')
MASK_SUFFIXES = ('.png',)
TIFF_SUFFIXES = ('.tif', '.tiff')
LAYOUT = 'DATA_ROOT/{split}/images/<name>.<png|tif|tiff|jpg> and DATA_ROOT/{split}/masks/<name>.png'


class DataError(ValueError):
    """A dataset file or folder is missing, unreadable or holds unexpected values."""


@dataclass(frozen=True)
class SamplePaths:
    """An image and its mask (``None`` when the split is read without masks)."""

    image: Path
    mask: 'Path | None'


def _describe(paths: Sequence[Path], limit: int = 5) -> str:
    names = ', '.join(path.name for path in paths[:limit])
    return names + (f' and {len(paths) - limit} more' if len(paths) > limit else '')


def list_images(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> List[Path]:
    """Files in ``folder`` with one of ``suffixes`` (case-insensitive), sorted by name."""
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and path.suffix.lower() in suffixes)


def _by_stem(paths: Sequence[Path], folder: Path) -> dict:
    stems: dict = {}
    for path in paths:
        if path.stem in stems:
            raise DataError(f'{folder} holds two files with the stem {path.stem!r}: '
                            f'{stems[path.stem].name} and {path.name}; names must be unique')
        stems[path.stem] = path
    return stems


def pair_samples(image_dir: Path, mask_dir: 'Path | None') -> List[SamplePaths]:
    """Pair every image with the mask of the same stem; raise if either side has no partner."""
    if not image_dir.is_dir():
        raise DataError(f'image folder {image_dir} not found; expected {LAYOUT}')
    images = list_images(image_dir)
    if not images:
        raise DataError(f'no images in {image_dir} (looked for {", ".join(IMAGE_SUFFIXES)}); '
                        f'the split is empty')
    if mask_dir is None:
        return [SamplePaths(image, None) for image in images]
    if not mask_dir.is_dir():
        raise DataError(f'mask folder {mask_dir} not found; expected {LAYOUT}')
    image_stems = _by_stem(images, image_dir)
    mask_stems = _by_stem(list_images(mask_dir, MASK_SUFFIXES), mask_dir)
    lonely_images = [image_stems[stem] for stem in sorted(set(image_stems) - set(mask_stems))]
    lonely_masks = [mask_stems[stem] for stem in sorted(set(mask_stems) - set(image_stems))]
    if lonely_images:
        raise DataError(f'{len(lonely_images)} image(s) in {image_dir} have no mask in {mask_dir}: '
                        f'{_describe(lonely_images)} (expected masks/<same name>.png)')
    if lonely_masks:
        raise DataError(f'{len(lonely_masks)} mask(s) in {mask_dir} have no image in {image_dir}: '
                        f'{_describe(lonely_masks)}')
    return [SamplePaths(image_stems[stem], mask_stems[stem]) for stem in sorted(image_stems)]


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
    array = _read_raw(path)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # planar TIFF (C, H, W)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise DataError(f'{path} has shape {array.shape}; expected a 2D image, gray (H, W) or '
                        f'with channels (H, W, C), not a stack')
    return array


def read_mask(path: Path) -> np.ndarray:
    """Read a mask as ``(H, W)`` integer class indices."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            # palette PNGs hold indices; never let a decoder map them to colours
            array = np.asarray(image)
    except FileNotFoundError:
        raise DataError(f'{path} not found') from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f'cannot read mask {path}: {err} (corrupt or not a PNG?)') from err
    if array.ndim != 2:
        raise DataError(f'mask {path} has shape {array.shape}; expected one class index per pixel '
                        f'(a single-channel 8- or 16-bit PNG), not a colour image')
    if array.dtype == bool:  # 1-bit PNGs
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f'mask {path} holds {array.dtype} values; expected integer class indices')
    return array


def image_size(array: np.ndarray) -> Tuple[int, int]:
    """``(height, width)`` of an image or mask array."""
    return int(array.shape[0]), int(array.shape[1])


def check_mask_values(mask: np.ndarray, path: Path, num_classes: int, ignore_index: int) -> None:
    """Raise unless every pixel is a class index ``0..num_classes-1`` or ``ignore_index``."""
    values = np.unique(mask)
    bad = values[(values >= num_classes) & (values != ignore_index) | (values < 0)]
    if bad.size:
        raise DataError(f'mask {path} holds value(s) {bad[:10].tolist()}; expected class indices '
                        f'0..{num_classes - 1} or {ignore_index} (ignore)')


def to_channels(image: np.ndarray, channels: int, path: Path) -> np.ndarray:
    """Match the model's input channels: gray is repeated; RGB(A) becomes luminance for 1."""
    have = image.shape[2]
    if have == 4 and channels != 4:
        image, have = image[..., :3], 3  # drop alpha
    if have == channels:
        return image
    if have == 1:
        return np.repeat(image, channels, axis=2)
    if have == 3 and channels == 1:
        weights = np.array([0.299, 0.587, 0.114], np.float32)
        return (image.astype(np.float32) @ weights)[:, :, None].astype(image.dtype)
    raise DataError(f'{path} has {have} channels but the model takes {channels}; '
                    f'set in_channels to {have} or convert the images')
