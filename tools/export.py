"""Export a trained model (or its backbone) to ONNX, TorchScript or a torch.export program, and
check the file against PyTorch on other input sizes.

    python tools/export.py CONFIG CHECKPOINT --format onnx --out model.onnx [--part backbone]
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
import sys

from mmengine.config import DictAction

from effnet_backbones.export import FORMATS
from tasks.engine.checkpoint import load_trained_model
from tasks.engine.config import load_config, merge_options
from tasks.engine.export import PARTS, export_checked, export_target


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='checkpoint file written by tools/train.py')
    parser.add_argument('--format', required=True, choices=FORMATS)
    parser.add_argument('--out', required=True, help='file to write (written atomically)')
    parser.add_argument('--part', choices=PARTS, default='model',
                        help="'model': the whole network (U-Net logits); 'backbone': the taps")
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset (17 or newer)')
    parser.add_argument('--check-sizes', type=int, nargs='+', default=[64, 97],
                        help='square-ish input sizes the export is compared with PyTorch on')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='the overrides the checkpoint was trained with')
    return parser.parse_args(argv)


def main(argv=None) -> float:
    """Export; returns the max abs difference between the file and PyTorch."""
    args = parse_args(argv)
    cfg = load_config(args.config)
    merge_options(cfg, args.cfg_options)
    model, _ = load_trained_model(cfg, args.checkpoint)
    target = export_target(model, args.part)
    difference = export_checked(target, args.out, args.format, args.check_sizes, args.opset)
    print(f'{args.out}: {target.description}, {args.format}, dynamic batch and size; '
          f'max |exported - PyTorch| = {difference:.3g} on sizes {args.check_sizes}')
    return difference


if __name__ == '__main__':
    sys.exit(0 if main() <= 1e-3 else 1)
