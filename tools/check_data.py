"""Check a dataset without training: what it holds, and every problem found (exit code 1 if any).

    python tools/check_data.py DATA_ROOT                 # DATA_ROOT/{train,val}/{images,masks}
    python tools/check_data.py DATA_ROOT --splits train val test
    python tools/check_data.py COCO_ROOT --task det      # COCO_ROOT/{train,val}.json + images/
    python tools/check_data.py NNUNET_ROOT               # imagesTr/ + labelsTr/ + dataset.json

Prints the classes (from dataset.json, classes.txt or the mask values), the image channels, the
images per split, their size range and each class's share of the training pixels, then every
problem: images without masks and the reverse, size mismatches, mask values beyond the declared
classes, labels no mask holds (a warning), mixed channel counts, unreadable files, empty splits.
For COCO sets (``--task det``, the default when DATA_ROOT holds train.json): categories (the
splits must agree), channels, images and boxes per split and class, then every problem: malformed
JSON, unknown or duplicate ids, missing images, sizes that differ from the JSON, boxes partly or
wholly outside their image or of zero area (training clips or drops those, with a warning).
For volumes (``--task volumes``, the default when DATA_ROOT holds imagesTr/): classes, channels,
cases, shapes, spacings and slicing axes, the fold-0 split and each class's share of the training
voxels, then every problem: cases missing a channel or a label, labels or channels on another grid
(shape or affine; a label on a whole-voxel part of its image's grid is placed on it, with a
note), 4-D labels, values beyond the classes, unreadable or truncated files, a
``file_ending`` or channel count that disagrees with the files. Training runs the same checks
before its first iteration.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import sys

from pathlib import Path

from tasks.common.io import DataError
from tasks.detection.data_config import check_coco_folder
from tasks.segmentation.dataset_info import scan_folder
from tasks.segmentation.volumes import check_volume_folder, is_volume_root


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', metavar='DATA_ROOT')
    parser.add_argument('--task', choices=('seg', 'det', 'volumes'), default=None,
                        help='seg: {split}/images + {split}/masks; det: {split}.json + images/; '
                             'volumes: imagesTr/ + labelsTr/ + dataset.json (default: det when '
                             'DATA_ROOT holds train.json, volumes when it holds imagesTr/)')
    parser.add_argument('--splits', nargs='+', default=['train', 'val'])
    parser.add_argument('--img-dir', default='images')
    parser.add_argument('--mask-dir', default='masks')
    parser.add_argument('--ignore-index', type=int, default=255)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Print the summary and the problems; return the exit code (0 clean, 1 problems)."""
    args = parse_args(argv)
    root = Path(args.data_root)
    task = args.task or ('det' if (root / 'train.json').is_file() else
                         'volumes' if is_volume_root(root) else 'seg')
    if task == 'volumes':
        summary, problems = check_volume_folder(root)
        print(summary)
        print(f'{len(problems)} problem(s)')
        return 1 if problems else 0
    if task == 'det':
        summary, problems = check_coco_folder(args.data_root, tuple(args.splits), args.img_dir)
        print(summary)
        print(f'{len(problems)} problem(s)')
        return 1 if problems else 0
    try:
        info = scan_folder(args.data_root, args.splits, args.img_dir, args.mask_dir,
                           args.ignore_index)
    except DataError as err:  # nothing to scan: no root, an unreadable description file
        print(f'problem: {err}')
        return 1
    print(info.summary())
    print(f'{len(info.problems)} problem(s), {len(info.warnings)} warning(s)')
    return 1 if info.problems else 0


if __name__ == '__main__':
    sys.exit(main())
