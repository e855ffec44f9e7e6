"""Grow a trained EfficientNet model into a larger variant (B0 -> B4, ...); see docs/transplant.md.

    # a backbone checkpoint (ours, torchvision's or timm's) -> our backbone format
    python tools/transplant.py b0_backbone.pth --arch b4 --out b4_backbone.pth
    # a trained task model (U-Net, RetinaNet) -> a checkpoint for load_from in the larger config
    python tools/transplant.py work_dirs/unet_b0/best_mDice_iter_600.pth --arch b4 \\
        --out b4_from_b0.pth --config configs/unet_effb0_quick.py

With ``--config`` the source is the config's model at the checkpoint's variant and the output is
the same model at ``--arch``; ``SRC`` may also be a work dir (its best, else last checkpoint).
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import json
from pathlib import Path

from mmengine.config import DictAction

from effnet_backbones.transplanting import MODES, grow_backbone
from effnet_backbones.weights import SOURCES, save_backbone


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', metavar='SRC_CHECKPOINT',
                        help='trained checkpoint: a backbone file, or with --config a task '
                             'checkpoint or work dir')
    parser.add_argument('--arch', required=True, help='the larger variant, b0 ... b7')
    parser.add_argument('--out', required=True, metavar='DST_CHECKPOINT', help='file to write')
    parser.add_argument('--config', help='config of the trained task model (U-Net, RetinaNet ...)')
    parser.add_argument('--src-arch', help='with --config: the source variant, when its shapes do not tell')
    parser.add_argument('--mode', choices=MODES, default='exact',
                        help="'exact' keeps the source's outputs; 'plain' only copies slices")
    parser.add_argument('--source', choices=SOURCES, default='auto',
                        help='key layout of a backbone checkpoint (without --config)')
    parser.add_argument('--report', metavar='JSON', help='also write the report as JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='with --config: the overrides the source was trained with')
    return parser.parse_args(argv)


def main(argv=None):
    """Grow, save, print the report; returns it."""
    args = parse_args(argv)
    if args.config:
        from tasks.engine.transplant import grow_checkpoint

        report = grow_checkpoint(args.src, args.arch, args.out, config=args.config,
                                 mode=args.mode, src_arch=args.src_arch,
                                 cfg_options=args.cfg_options)
    else:
        backbone, report = grow_backbone(args.src, args.arch, mode=args.mode, source=args.source)
        save_backbone(backbone, args.out)
    print(report.summary())
    print(f'wrote {args.out}')
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_dict(), indent=2))
    return report


if __name__ == '__main__':
    main()
