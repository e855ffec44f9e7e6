"""Cut a COCO detection set into tiles of one size, boxes following (train.json, val.json, images/).

    python tools/tile_coco.py SRC --tile 128 --out DIR            # 128 x 128 tiles
    python tools/tile_coco.py SRC --tile 128 256 --out DIR        # height 128, width 256
    python tools/tile_coco.py SRC --tile 512 --splits val.json --min-visible 0.3 --out DIR

Tiles start at the first pixel and the last one ends on the image's edge (full-size tiles unless
the image is smaller); a box goes into every tile holding at least --min-visible of its area,
clipped to it. Uses: scoring a detector on inputs of its training crop size next to the whole
images (docs/detection.md, section 9), or training on images too large for one batch.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse

from tasks.detection.tiling import tile_coco


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', metavar='SRC', help='the COCO set: SRC/train.json, val.json, images/')
    parser.add_argument('--tile', type=int, nargs='+', required=True, metavar='SIDE',
                        help='one side, or height and width')
    parser.add_argument('--out', required=True, help='the folder to write (same layout)')
    parser.add_argument('--splits', nargs='+', default=['train.json', 'val.json'],
                        help='annotation files to tile (missing ones are skipped)')
    parser.add_argument('--min-visible', type=float, default=0.5,
                        help="share of a box's area a tile must hold to keep it (default 0.5)")
    return parser.parse_args(argv)


def main(argv=None):
    """Tile the set; returns the counts per split."""
    args = parse_args(argv)
    if len(args.tile) > 2:
        raise SystemExit(f'--tile takes one side or height and width, got {args.tile}')
    tile = args.tile[0] if len(args.tile) == 1 else tuple(args.tile)
    counts = tile_coco(args.src, args.out, tile, args.splits, args.min_visible)
    for split, numbers in counts.items():
        print(f'{split}: {numbers["images"]} images -> {numbers["tiles"]} tiles, '
              f'{numbers["boxes"]} boxes')
    return counts


if __name__ == '__main__':
    main()
