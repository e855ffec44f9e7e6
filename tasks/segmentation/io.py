"""Masks of the segmentation layout: pairing ``{split}/images`` with ``{split}/masks``, reading
class-index masks and checking their values.

Images themselves are read by :mod:`tasks.common.io`; every problem here is reported as its
:class:`~tasks.common.io.DataError`, naming the file(s) and what was expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..common.io import IMAGE_SUFFIXES, DataError, list_images, shorten_list

__all__ = ['MASK_SUFFIXES', 'LAYOUT', 'SamplePaths', 'pair_samples', 'read_mask',
           'check_mask_values']

MASK_SUFFIXES = ('.png',)
LAYOUT = 'DATA_ROOT/{split}/images/<name>.<png|tif|tiff|jpg> and DATA_ROOT/{split}/masks/<name>.png'


@dataclass(frozen=True)
class SamplePaths:
    """An image and its mask (``None`` when the split is read without masks)."""

    image: Path
    mask: Optional[Path]


def _names(paths: Sequence[Path]) -> str:
    return shorten_list([path.name for path in paths])


def _by_stem(paths: Sequence[Path], folder: Path) -> Dict[str, Path]:
    stems: Dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise DataError(f'{folder} holds two files with the stem {path.stem!r}: '
                            f'{stems[path.stem].name} and {path.name}; names must be unique')
        stems[path.stem] = path
    return stems


def pair_samples(image_dir: Path, mask_dir: Optional[Path],
                 problems: Optional[List[str]] = None) -> List[SamplePaths]:
    """Pair every image with the mask of the same stem; raise if either side has no partner.

    With a ``problems`` list, files without a partner are reported there instead and the pairs
    that do match are returned (``tools/check_data.py`` lists every problem at once).
    """
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
    unpaired = []
    if lonely_images:
        unpaired.append(f'{len(lonely_images)} image(s) in {image_dir} have no mask in {mask_dir}: '
                        f'{_names(lonely_images)} (expected masks/<same name>.png)')
    if lonely_masks:
        unpaired.append(f'{len(lonely_masks)} mask(s) in {mask_dir} have no image in {image_dir}: '
                        f'{_names(lonely_masks)}')
    if unpaired and problems is None:
        raise DataError(unpaired[0])
    if problems is not None:
        problems.extend(unpaired)
    return [SamplePaths(image_stems[stem], mask_stems[stem])
            for stem in sorted(set(image_stems) & set(mask_stems))]


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


def check_mask_values(mask: np.ndarray, path: Path, num_classes: int, ignore_index: int) -> None:
    """Raise unless every pixel is a class index ``0..num_classes-1`` or ``ignore_index``."""
    values = np.unique(mask)
    bad = values[(values >= num_classes) & (values != ignore_index) | (values < 0)]
    if bad.size:
        raise DataError(f'mask {path} holds value(s) {bad[:10].tolist()}; expected class indices '
                        f'0..{num_classes - 1} or {ignore_index} (ignore)')
