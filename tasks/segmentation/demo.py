"""The embedded demo dataset: a real fluorescence nuclei image, cut into train and val tiles.

Source: ``stardist/data/images/img2d.tif`` and ``mask2d.tif`` inside the stardist wheel on PyPI
(BSD-3-Clause); the image is from the 2018 Data Science Bowl (BBBC038, Caicedo et al., Nature
Methods 2019). :func:`build_demo_dataset` turns its per-nucleus labels into three classes
(background, nucleus, nucleus contour: the contour class is what separates touching nuclei) and
writes the folder layout every segmentation config reads.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, Iterator, Tuple

import numpy as np

__all__ = ['DEMO_DATA_ROOT', 'DEMO_CLASSES', 'STARDIST_VERSION', 'WHEEL_MEMBERS',
           'instances_to_classes', 'demo_tiles', 'build_demo_dataset']

DEMO_DATA_ROOT = Path(__file__).resolve().parent / 'demo_data'
DEMO_CLASSES = ('background', 'nucleus', 'contour')
STARDIST_VERSION = '0.9.2'
WHEEL_MEMBERS = {'image': 'stardist/data/images/img2d.tif',
                 'labels': 'stardist/data/images/mask2d.tif'}
WHEEL_LICENSE_SUFFIX = 'LICENSE.txt'

#: (split, row slice, column slice) of the 512 x 512 image. Rows 392.. are held out for
#: validation; its 120-px height is not a multiple of 32, so validation also exercises padding.
TILES = (
    ('train', slice(0, 196), slice(0, 256)), ('train', slice(0, 196), slice(256, 512)),
    ('train', slice(196, 392), slice(0, 256)), ('train', slice(196, 392), slice(256, 512)),
    ('val', slice(392, 512), slice(0, 256)), ('val', slice(392, 512), slice(256, 512)),
)


def instances_to_classes(labels: np.ndarray, contour_width: int = 2) -> np.ndarray:
    """Map a per-instance label image to 0 background, 1 nucleus interior, 2 nucleus contour.

    A pixel is contour if it lies within ``contour_width`` pixels (8-neighbourhood) of a pixel with
    another label, background included.
    """
    labels = labels.astype(np.int64)
    interior = labels > 0
    current = labels
    for _ in range(contour_width):
        padded = np.pad(current, 1, mode='edge')
        height, width = labels.shape
        same = np.ones_like(interior)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                same &= padded[dy:dy + height, dx:dx + width] == labels
        interior &= same
        current = np.where(interior, labels, -1)  # eroded instances, for the next ring
    classes = np.zeros(labels.shape, np.uint8)
    classes[labels > 0] = 2
    classes[interior] = 1
    return classes


def demo_tiles(image: np.ndarray,
               classes: np.ndarray) -> Iterator[Tuple[str, str, np.ndarray, np.ndarray]]:
    """Yield ``(split, name, image_tile, mask_tile)`` for the fixed demo split."""
    for split, rows, cols in TILES:
        name = f'nuclei_r{rows.start:03d}_c{cols.start:03d}'
        yield split, name, image[rows, cols], classes[rows, cols]


def _read_wheel(wheel: Path) -> Tuple[Dict[str, np.ndarray], str]:
    import io

    import tifffile
    with zipfile.ZipFile(wheel) as archive:
        arrays = {key: tifffile.imread(io.BytesIO(archive.read(member)))
                  for key, member in WHEEL_MEMBERS.items()}
        licence = next(name for name in archive.namelist() if name.endswith(WHEEL_LICENSE_SUFFIX))
        return arrays, archive.read(licence).decode('utf-8')


def build_demo_dataset(wheel: Path, out_dir: Path = DEMO_DATA_ROOT) -> Dict[str, int]:
    """Write the demo dataset from a downloaded stardist wheel; return the tile count per split.

    Images stay 16-bit grayscale PNGs (as in the source), masks are 8-bit class-index PNGs.
    """
    import cv2
    arrays, licence = _read_wheel(Path(wheel))
    image = arrays['image'].astype(np.uint16)
    classes = instances_to_classes(arrays['labels'])
    counts: Dict[str, int] = {}
    for split, name, image_tile, mask_tile in demo_tiles(image, classes):
        for kind, tile in (('images', image_tile), ('masks', mask_tile)):
            folder = out_dir / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f'{name}.png'), np.ascontiguousarray(tile),
                        [cv2.IMWRITE_PNG_COMPRESSION, 9])
        counts[split] = counts.get(split, 0) + 1
    (out_dir / 'LICENSE-stardist.txt').write_text(licence)
    return counts
