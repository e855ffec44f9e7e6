"""Copy an nnU-Net raw folder with its volumes in another format (NIfTI, NRRD, MetaImage).

    python tools/convert_volumes.py SOURCE TARGET --file-ending .nrrd
    python tools/convert_volumes.py SLICER_EXPORT nifti_copy --file-ending .nii.gz

Every volume of imagesTr/, labelsTr/, imagesTs/ and labelsTs/ is rewritten with its voxels and
dtype as stored and its geometry (origin, spacing, direction) carried over; dataset.json gets the
new ``file_ending``; every other file is copied. TARGET must be new or empty; the copy appears
there only once complete.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import sys

from tasks.common.io import DataError
from tasks.segmentation.volumes import convert_volume_folder


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('source', metavar='SOURCE', help='nnU-Net raw folder (dataset.json, '
                                                          'imagesTr/, labelsTr/ ...)')
    parser.add_argument('target', metavar='TARGET', help='new folder for the copy')
    parser.add_argument('--file-ending', required=True,
                        help="the copy's format: .nii.gz, .nii, .nrrd or .mha")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Convert; return the exit code (0 done, 1 a data problem, reported by name)."""
    args = parse_args(argv)
    try:
        written = convert_volume_folder(args.source, args.target, args.file_ending)
    except DataError as err:
        print(f'problem: {err}')
        return 1
    print(f'wrote {len(written)} volumes ({args.file_ending}) to {args.target}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
