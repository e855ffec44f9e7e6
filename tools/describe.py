"""Print the figures of EfficientNet variants: parameters, GMACs, blocks, skips, taps.

    python tools/describe.py                 # all of b0..b7, markdown
    python tools/describe.py b0 b4 --format json
    python tools/describe.py b0 b4 --option shortcut=resnet_d --option block_attention=None
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import ast
import json
import sys

from effnet_backbones.profile import describe_variants, markdown_table
from effnet_backbones.spec import ARCHS, check_arch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('archs', nargs='*', default=list(ARCHS),
                        help=f'variants to describe (default: all of {", ".join(ARCHS)})')
    parser.add_argument('--format', choices=('markdown', 'json'), default='markdown')
    parser.add_argument('--option', action='append', default=[], metavar='KEY=VALUE',
                        help='a backbone option (Python literal values: None, 0.25, True, '
                             "'resnet_d'; bare words are strings); shows its skip ratio and "
                             'parameter change')
    args = parser.parse_args(argv)
    try:
        args.archs = [check_arch(arch) for arch in args.archs]
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    args.options = dict(parse_option(parser, item) for item in args.option)
    return args


def parse_option(parser: argparse.ArgumentParser, item: str):
    """``KEY=VALUE`` as ``(key, value)``, the value read as a Python literal where it is one."""
    key, sep, text = item.partition('=')
    if not sep or not key:
        parser.error(f'--option {item!r}: expected KEY=VALUE, e.g. shortcut=resnet_d')
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    return key, value


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        rows = describe_variants(args.archs, args.options)
    except (TypeError, ValueError) as err:
        sys.exit(f'describe.py: {err}')
    print(json.dumps(rows, indent=2) if args.format == 'json' else markdown_table(rows))


if __name__ == '__main__':
    sys.exit(main())
