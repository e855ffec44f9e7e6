"""Rebuild the embedded demo dataset (tasks/segmentation/demo_data) from the stardist wheel.

    python tools/make_demo_data.py                      # pip-downloads stardist==0.9.2 (no deps)
    python tools/make_demo_data.py --wheel stardist-0.9.2-*.whl --out DIR

The generated PNGs are committed, so training never needs this; it documents where they come from.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
from pathlib import Path

from tasks.common.demo import build_from_wheel
from tasks.segmentation.demo import DEMO_DATA_ROOT, build_demo_dataset


def run(build, default_out: Path, what: str, description: str, argv=None) -> None:
    """The demo-data command line: ``--wheel`` (else download it) and ``--out``, then ``build``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--wheel', type=Path,
                        help='a downloaded stardist wheel (default: download it)')
    parser.add_argument('--out', type=Path, default=default_out, help='output folder')
    args = parser.parse_args(argv)
    counts = build_from_wheel(build, args.out, args.wheel)
    print(f'wrote {counts} {what} to {args.out}')


def main(argv=None) -> None:
    run(build_demo_dataset, DEMO_DATA_ROOT, 'tiles', __doc__.splitlines()[0], argv)


if __name__ == '__main__':
    main()
