"""Check a dataset without training: what it holds, and every problem found (exit code 1 if any).

    python tools/check_data.py DATA_ROOT                 # DATA_ROOT/{train,val}/{images,masks}
    python tools/check_data.py DATA_ROOT --splits train val test

Prints the classes (from dataset.json, classes.txt or the mask values), the image channels, the
images per split, their size range and each class's share of the training pixels, then every
problem: images without masks and the reverse, size mismatches, mask values beyond the declared
classes, labels no mask holds (a warning), mixed channel counts, unreadable files, empty splits.
Training runs the same check before its first iteration.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import sys

from tasks.common.io import DataError
from tasks.segmentation.dataset_info import scan_folder


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', metavar='DATA_ROOT')
    parser.add_argument('--task', choices=('seg',), default='seg',
                        help='dataset layout: seg = {split}/images + {split}/masks')
    parser.add_argument('--splits', nargs='+', default=['train', 'val'])
    parser.add_argument('--img-dir', default='images')
    parser.add_argument('--mask-dir', default='masks')
    parser.add_argument('--ignore-index', type=int, default=255)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Print the summary and the problems; return the exit code (0 clean, 1 problems)."""
    args = parse_args(argv)
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
