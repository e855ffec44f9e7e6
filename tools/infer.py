"""Predict with a trained checkpoint: one mask PNG and one overlay PNG per input image.

    python tools/infer.py CONFIG CHECKPOINT INPUT... --out-dir DIR [--overwrite]
        [--tta] [--sliding-window [--overlap 0.5]] [--largest-component]
INPUT: image files, folders of images, or glob patterns (quote them: 'scans/*.tif').
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

import argparse
from importlib import import_module

from mmengine.config import DictAction

from tasks.engine.config import load_config, merge_options
from tasks.engine.inference_options import (add_inference_arguments, apply_inference_options,
                                            fill_slide_window)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('inputs', nargs='+', metavar='INPUT', help='image files, folders or globs')
    parser.add_argument('--out-dir', required=True, help='folder for the outputs')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace outputs already in --out-dir (else such a run stops '
                             'before writing anything)')
    parser.add_argument('--device', help="'cuda', 'cpu' ... (default: CUDA if available)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='the overrides the checkpoint was trained with (or pass the config '
                             'saved in its work dir)')
    add_inference_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Run inference; returns the files written."""
    args = parse_args(argv)
    cfg = load_config(args.config)
    merge_options(cfg, args.cfg_options)
    apply_inference_options(cfg, tta=args.tta, sliding_window=args.sliding_window,
                            overlap=args.overlap, largest_component=args.largest_component)
    fill_slide_window(cfg)  # test_cfg mode='slide' without a window: the training crop
    # the config's task names the package whose inference module knows its outputs
    task = import_module(f'tasks.{cfg.get("task", "segmentation")}.inference')
    written = task.run_inference(cfg, args.checkpoint, args.inputs, args.out_dir,
                                 device=args.device, overwrite=args.overwrite)
    print(f'wrote {len(written)} files to {args.out_dir}')
    return written


if __name__ == '__main__':
    main()
