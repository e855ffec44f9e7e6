"""Detecting objects in image files with a trained config and checkpoint (``tools/infer.py``).

Per input image: ``<name>_detections.json`` (COCO results entries, original pixels, plus the class
name) and ``<name>_boxes.png`` (the image with boxes, class names and scores drawn). The JSON holds
every detection the model keeps (``score_thresh``); the drawing shows those scoring at least the
config's ``infer_score_thr`` (default 0.3), so it stays readable.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.config import Config

from ..common.inference import Inferencer
from ..common.visualize import to_display, write_rgb
from .metrics import to_coco_results
from .preprocess import NetworkInput
from .sample import DetSample
from .visualize import draw_detections

__all__ = ['DetInferencer', 'run_inference', 'DEFAULT_DRAW_SCORE']

DEFAULT_DRAW_SCORE = 0.3


class DetInferencer(Inferencer):
    """A trained detector plus the image preparation it was trained with.

    ``predict(path)`` returns ``(image in [0, 1] (H, W, C), DetSample with pred_* in original
    pixels)``. Arguments as :class:`~tasks.common.inference.Inferencer`; the config's test dataset
    also gives ``img_size`` (or ``img_scale``), ``resize`` and ``classes``.
    """

    output_suffixes = ('_detections.json', '_boxes.png')

    def __init__(self, cfg: Config, checkpoint: str, device: Optional[str] = None) -> None:
        super().__init__(cfg, checkpoint, device)
        dataset = self.dataset_cfg
        self.prep = NetworkInput.build(self.in_channels, self.norm, dataset.get('img_size'),
                                       dataset.get('resize', 'letterbox'),
                                       dataset.get('img_scale'))
        # names and category ids as training saw them; without them, plain label numbers
        meta = self.checkpoint_meta.get('dataset_meta') or {}
        self.classes = tuple(meta.get('classes') or dataset.get('classes') or
                             (str(i) for i in range(self.model.num_classes)))
        self.cat_ids = tuple(meta.get('cat_ids') or range(1, len(self.classes) + 1))
        self.draw_score = float(cfg.get('infer_score_thr', DEFAULT_DRAW_SCORE))

    def predict_image(self, image: np.ndarray, path: Path) -> DetSample:
        """A sample with ``pred_boxes`` (original pixels), ``pred_scores`` and ``pred_labels``."""
        resized, mapping = self.prep.to_size(image)
        tensor = self.prep.to_tensor(resized).to(self.device)
        sample = DetSample(img_path=str(path), img_id=0, ori_shape=image.shape[:2],
                           img_shape=tuple(tensor.shape[-2:]), mapping=mapping)
        return self.model.predict([tensor], [sample])[0]

    def results(self, sample: DetSample) -> List[Dict[str, Any]]:
        """COCO results entries for a predicted sample, each with its class name."""
        entries = to_coco_results(sample.img_id, sample.pred_boxes.cpu().numpy(),
                                  sample.pred_scores.cpu().numpy(),
                                  sample.pred_labels.cpu().numpy(), self.cat_ids)
        names = {cat_id: name for cat_id, name in zip(self.cat_ids, self.classes)}
        return [dict(entry, category_name=names[entry['category_id']]) for entry in entries]

    def write(self, folder: Path, name: str, image: np.ndarray, prediction: DetSample,
              path: Path) -> List[Path]:
        """``<name>_detections.json`` (every detection) and ``<name>_boxes.png`` (those scoring
        at least ``infer_score_thr``)."""
        json_path, png_path = self.output_paths(folder, name, path)
        entries = self.results(prediction)
        json_path.write_text(json.dumps(dict(image=str(path), detections=entries), indent=1))
        shown = (prediction.pred_scores >= self.draw_score).cpu().numpy()
        drawn = draw_detections(to_display(image), prediction.pred_boxes.cpu().numpy()[shown],
                                prediction.pred_scores.cpu().numpy()[shown],
                                prediction.pred_labels.cpu().numpy()[shown], self.classes)
        write_rgb(png_path, drawn)
        return [json_path, png_path]


def run_inference(cfg: Config, checkpoint: str, inputs: Sequence[str], out_dir: str,
                  device: Optional[str] = None, overwrite: bool = False) -> List[Path]:
    """Write ``<name>_detections.json`` and ``<name>_boxes.png`` per input image; existing
    outputs stop the run before anything is written unless ``overwrite``."""
    return DetInferencer(cfg, checkpoint, device).run(inputs, out_dir, overwrite=overwrite)
