"""The source of the embedded demo data sets: one real fluorescence nuclei image, cut into tiles.

Source: ``stardist/data/images/img2d.tif`` (the image) and ``mask2d.tif`` (one label per nucleus)
inside the stardist wheel on PyPI (BSD-3-Clause); the image is from the 2018 Data Science Bowl
(BBBC038, Caicedo et al., Nature Methods 2019). Every task's demo cuts the same train and val
tiles (:func:`demo_tiles`) and turns the labels into its own targets (class masks, boxes).
"""
from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple, TypeVar

import numpy as np

__all__ = ['STARDIST_VERSION', 'WHEEL_MEMBERS', 'LICENCE_FILE', 'TILES', 'download_wheel',
           'read_wheel', 'build_from_wheel', 'demo_tiles', 'write_png']

Result = TypeVar('Result')

STARDIST_VERSION = '0.9.2'
WHEEL_MEMBERS = {'image': 'stardist/data/images/img2d.tif',
                 'labels': 'stardist/data/images/mask2d.tif'}
WHEEL_LICENSE_SUFFIX = 'LICENSE.txt'
#: where each demo folder keeps the wheel's licence text
LICENCE_FILE = 'LICENSE-stardist.txt'

#: (split, row slice, column slice) of the 512 x 512 image. Rows 392.. are held out for
#: validation; its 120-px height is not a multiple of 32, so validation also exercises padding.
TILES = (
    ('train', slice(0, 196), slice(0, 256)), ('train', slice(0, 196), slice(256, 512)),
    ('train', slice(196, 392), slice(0, 256)), ('train', slice(196, 392), slice(256, 512)),
    ('val', slice(392, 512), slice(0, 256)), ('val', slice(392, 512), slice(256, 512)),
)


def download_wheel(folder: Path) -> Path:
    """``pip download stardist==STARDIST_VERSION --no-deps`` into ``folder``; returns the wheel."""
    subprocess.run([sys.executable, '-m', 'pip', 'download', f'stardist=={STARDIST_VERSION}',
                    '--no-deps', '--only-binary=:all:', '-d', str(folder)], check=True)
    return next(Path(folder).glob('stardist-*.whl'))


def read_wheel(wheel: Path) -> Tuple[Dict[str, np.ndarray], str]:
    """``({'image': ..., 'labels': ...}, licence text)`` from a downloaded stardist wheel."""
    import tifffile
    with zipfile.ZipFile(wheel) as archive:
        arrays = {key: tifffile.imread(io.BytesIO(archive.read(member)))
                  for key, member in WHEEL_MEMBERS.items()}
        licence = next(name for name in archive.namelist() if name.endswith(WHEEL_LICENSE_SUFFIX))
        return arrays, archive.read(licence).decode('utf-8')


def build_from_wheel(build: Callable[[Path, Path], Result], out_dir: Path,
                     wheel: Optional[Path] = None) -> Result:
    """Run a task's ``build(wheel, out_dir)`` on ``wheel``, downloading it first when not given."""
    if wheel is not None:
        return build(Path(wheel), Path(out_dir))
    with tempfile.TemporaryDirectory() as tmp:
        return build(download_wheel(Path(tmp)), Path(out_dir))


def demo_tiles(image: np.ndarray,
               targets: np.ndarray) -> Iterator[Tuple[str, str, np.ndarray, np.ndarray]]:
    """Yield ``(split, name, image_tile, target_tile)`` for the fixed demo split.

    Args:
        image: the 512 x 512 source image.
        targets: an array of the same size cut alike (class mask, instance labels).
    """
    for split, rows, cols in TILES:
        name = f'nuclei_r{rows.start:03d}_c{cols.start:03d}'
        yield split, name, image[rows, cols], targets[rows, cols]


def write_png(path: Path, array: np.ndarray) -> None:
    """Write an 8- or 16-bit array as a maximally compressed PNG (the files are committed)."""
    import cv2
    cv2.imwrite(str(path), np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, 9])
