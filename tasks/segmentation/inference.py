"""Predicting masks for image files with a trained config and checkpoint (``tools/infer.py``).

Per input image: ``<name>_mask.png`` (class indices) and ``<name>_overlay.png`` (the classes
coloured over the image).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config

from ..common.inference import Inferencer
from ..common.visualize import overlay, to_display, write_rgb

__all__ = ['SegInferencer', 'run_inference']


class SegInferencer(Inferencer):
    """A trained segmentation model plus the intensity normalisation it was trained with.

    ``predict(path)`` returns ``(image in [0, 1] (H, W, C), class map (H, W))``, predicted as the
    model's ``test_cfg`` says (sliding window, TTA, largest component). Arguments as
    :class:`~tasks.common.inference.Inferencer`; ``run(inputs, out_dir, overwrite=False)``
    refuses to replace existing outputs unless ``overwrite``.
    """

    output_suffixes = ('_mask.png', '_overlay.png')

    def predict_image(self, image: np.ndarray, path: Path) -> np.ndarray:
        """The class index per pixel ``(H, W)``."""
        chw = np.ascontiguousarray(self.norm.standardize(image).transpose(2, 0, 1))
        tensor = torch.from_numpy(chw)[None].to(self.device)
        return self.model.predict(tensor)[0].pred_mask.cpu().numpy()

    def write(self, folder: Path, name: str, image: np.ndarray, prediction: np.ndarray,
              path: Path) -> List[Path]:
        """``<name>_mask.png`` (8-bit, 16-bit beyond 255 classes) and ``<name>_overlay.png``."""
        import cv2
        mask_path, overlay_path = self.output_paths(folder, name, path)
        depth = np.uint8 if prediction.max() < 256 else np.uint16
        cv2.imwrite(str(mask_path), prediction.astype(depth))
        write_rgb(overlay_path, overlay(to_display(image), prediction))
        return [mask_path, overlay_path]


def run_inference(cfg: Config, checkpoint: str, inputs: Sequence[str], out_dir: str,
                  device: Optional[str] = None, overwrite: bool = False) -> List[Path]:
    """Write ``<name>_mask.png`` (class indices) and ``<name>_overlay.png`` per input image, or for
    volume inputs (NIfTI, NRRD, MetaImage: files, folders, globs) ``<case>.nii.gz`` (``.nrrd``,
    ``.mha``) and slice overlays per case
    (:class:`~tasks.segmentation.volume_inference.VolumeInferencer`); existing outputs stop the
    run before anything is written unless ``overwrite``."""
    from .volume_inference import VolumeInferencer, volume_inputs

    volumes = volume_inputs(inputs)
    if volumes is not None:
        return VolumeInferencer(cfg, checkpoint, device, overwrite=overwrite).run(volumes, out_dir)
    return SegInferencer(cfg, checkpoint, device).run(inputs, out_dir, overwrite=overwrite)
