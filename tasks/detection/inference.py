"""Detecting objects in image files with a trained config and checkpoint (``tools/infer.py``).

Per input image: ``<name>_detections.json`` (COCO results entries, original pixels, plus the class
name) and ``<name>_boxes.png`` (the image with boxes, class names and scores drawn). The JSON holds
every detection the model keeps (``score_thresh``); the drawing shows those scoring at least the
config's ``infer_score_thr`` (default 0.3), so it stays readable.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config


from ..engine.checkpoint import load_trained_model
from ..engine.inputs import expand_inputs
from ..segmentation.inference import output_names
from ..segmentation.io import IMAGE_SUFFIXES, read_image
from ..segmentation.visualize import to_display
from .metrics import to_coco_results
from .preprocess import NetworkInput
from .sample import DetSample
from .visualize import draw_detections

__all__ = ['DetInferencer', 'run_inference', 'DEFAULT_DRAW_SCORE']

DEFAULT_DRAW_SCORE = 0.3


class DetInferencer:
    """A trained detector plus the image preparation it was trained with.

    Args:
        cfg: the training config (model, and the test dataset's ``in_channels``, ``normalize``,
            ``img_size``, ``resize`` and ``classes``).
        checkpoint: a checkpoint written by training.
        device: 'cuda', 'cpu' ...; default CUDA when available.
    """

    def __init__(self, cfg: Config, checkpoint: str, device: Optional[str] = None) -> None:
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.model, checkpoint_meta = load_trained_model(cfg, checkpoint, self.device)
        dataset = (cfg.get('test_dataloader') or cfg.val_dataloader).dataset
        self.prep = NetworkInput.build(dataset.get('in_channels', 3), dataset.get('normalize'),
                                       dataset.get('img_size'), dataset.get('resize', 'letterbox'))
        # names and category ids as training saw them; without them, plain label numbers
        meta = checkpoint_meta.get('dataset_meta') or {}
        self.classes = tuple(meta.get('classes') or dataset.get('classes') or
                             (str(i) for i in range(self.model.num_classes)))
        self.cat_ids = tuple(meta.get('cat_ids') or range(1, len(self.classes) + 1))

    @torch.no_grad()
    def predict(self, path: Path) -> Tuple[np.ndarray, DetSample]:
        """``(image in [0, 1] (H, W, C), sample with pred_* in original pixels)`` for one file."""
        unit = self.prep.to_unit(read_image(path), path)
        resized, mapping = self.prep.to_size(unit)
        tensor = self.prep.to_tensor(resized).to(self.device)
        sample = DetSample(img_path=str(path), img_id=0, ori_shape=unit.shape[:2],
                           img_shape=tuple(tensor.shape[-2:]), mapping=mapping)
        return unit, self.model.predict([tensor], [sample])[0]

    def results(self, sample: DetSample) -> List[Dict[str, Any]]:
        """COCO results entries for a predicted sample, each with its class name."""
        entries = to_coco_results(sample.img_id, sample.pred_boxes.cpu().numpy(),
                                  sample.pred_scores.cpu().numpy(),
                                  sample.pred_labels.cpu().numpy(), self.cat_ids)
        names = {cat_id: name for cat_id, name in zip(self.cat_ids, self.classes)}
        return [dict(entry, category_name=names[entry['category_id']]) for entry in entries]


def run_inference(cfg: Config, checkpoint: str, inputs: Sequence[str], out_dir: str,
                  device: Optional[str] = None) -> List[Path]:
    """Write ``<name>_detections.json`` and ``<name>_boxes.png`` per input image."""
    import cv2
    files = expand_inputs(inputs, IMAGE_SUFFIXES)
    names = output_names(files)
    inferencer = DetInferencer(cfg, checkpoint, device)
    draw_score = float(cfg.get('infer_score_thr', DEFAULT_DRAW_SCORE))
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    for path, name in zip(files, names):
        unit, sample = inferencer.predict(path)
        json_path, png_path = folder / f'{name}_detections.json', folder / f'{name}_boxes.png'
        entries = inferencer.results(sample)
        json_path.write_text(json.dumps(dict(image=str(path), detections=entries), indent=1))
        shown = (sample.pred_scores >= draw_score).cpu().numpy()
        drawn = draw_detections(to_display(unit), sample.pred_boxes.cpu().numpy()[shown],
                                sample.pred_scores.cpu().numpy()[shown],
                                sample.pred_labels.cpu().numpy()[shown], inferencer.classes)
        cv2.imwrite(str(png_path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        written += [json_path, png_path]
    return written
