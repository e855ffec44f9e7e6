"""Print the figures of EfficientNet variants: parameters, GMACs, blocks, skips, taps.

    python tools/describe.py                 # all of b0..b7, markdown
    python tools/describe.py b0 b4 --format json
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import json
import sys

from effnet_backbones.profile import describe_variants, markdown_table
from effnet_backbones.spec import ARCHS, check_arch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('archs', nargs='*', default=list(ARCHS),
                        help=f'variants to describe (default: all of {", ".join(ARCHS)})')
    parser.add_argument('--format', choices=('markdown', 'json'), default='markdown')
    args = parser.parse_args(argv)
    try:
        args.archs = [check_arch(arch) for arch in args.archs]
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    rows = describe_variants(args.archs)
    print(json.dumps(rows, indent=2) if args.format == 'json' else markdown_table(rows))


if __name__ == '__main__':
    sys.exit(main())
