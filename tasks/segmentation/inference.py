"""Predicting masks for image files with a trained config and checkpoint (``tools/infer.py``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config

from ..engine.checkpoint import load_trained_model
from ..engine.inputs import expand_inputs
from .intensity import build_intensity_norm
from .io import IMAGE_SUFFIXES, read_image, to_channels
from .visualize import overlay, to_display

__all__ = ['SegInferencer', 'output_names', 'run_inference']


class SegInferencer:
    """A trained segmentation model plus the intensity normalisation it was trained with.

    Args:
        cfg: the training config (model, and the test dataset's ``normalize`` and
            ``in_channels``).
        checkpoint: a checkpoint written by training (``best_mDice_iter_N.pth`` ...).
        device: 'cuda', 'cpu' ...; default CUDA when available.
    """

    def __init__(self, cfg: Config, checkpoint: str, device: Optional[str] = None) -> None:
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.model, _ = load_trained_model(cfg, checkpoint, self.device)
        dataset = (cfg.get('test_dataloader') or cfg.val_dataloader).dataset
        self.norm = build_intensity_norm(dataset.get('normalize'))
        self.in_channels = dataset.get('in_channels', 3)

    @torch.no_grad()
    def predict(self, path: Path) -> Tuple[np.ndarray, np.ndarray]:
        """``(image in [0, 1] (H, W, C), class map (H, W))`` for one image file."""
        unit = self.norm.to_unit(to_channels(read_image(path), self.in_channels, path))
        chw = np.ascontiguousarray(self.norm.standardize(unit).transpose(2, 0, 1))
        tensor = torch.from_numpy(chw)
        labels = self.model.labels(self.model.logits(tensor[None].to(self.device)))[0]
        return unit, labels.cpu().numpy()


def output_names(files: Sequence[Path]) -> List[str]:
    """Output stems: the file's stem, or for a stem shared by several inputs, each one's path
    below their common folder (``val/images/a.png`` -> ``val_images_a``), so none overwrite."""
    stems = [path.stem for path in files]
    names = []
    for stem, path in zip(stems, files):
        namesakes = [other.resolve() for other, other_stem in zip(files, stems)
                     if other_stem == stem]
        if len(namesakes) == 1:
            names.append(stem)
            continue
        common = Path(os.path.commonpath([str(other.parent) for other in namesakes]))
        names.append('_'.join(path.resolve().relative_to(common).with_suffix('').parts))
    return names


def run_inference(cfg: Config, checkpoint: str, inputs: Sequence[str], out_dir: str,
                  device: Optional[str] = None) -> List[Path]:
    """Write ``<name>_mask.png`` (class indices) and ``<name>_overlay.png`` per input image."""
    import cv2
    files = expand_inputs(inputs, IMAGE_SUFFIXES)
    names = output_names(files)
    inferencer = SegInferencer(cfg, checkpoint, device)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    for path, name in zip(files, names):
        unit, labels = inferencer.predict(path)
        mask_path, overlay_path = folder / f'{name}_mask.png', folder / f'{name}_overlay.png'
        cv2.imwrite(str(mask_path), labels.astype(np.uint8 if labels.max() < 256 else np.uint16))
        blended = overlay(to_display(unit), labels)
        cv2.imwrite(str(overlay_path), cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
        written += [mask_path, overlay_path]
    return written
