"""Drawing detections (box, class name, score) on an image, for ``tools/infer.py``."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..common.visualize import class_colours

__all__ = ['draw_detections']


def draw_detections(rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    class_names: Sequence[str], thickness: int = 1) -> np.ndarray:
    """A copy of an 8-bit RGB image with each box outlined and captioned ``name score``.

    Colours follow :func:`~tasks.common.visualize.class_colours` (class 1 there = label 0 here),
    so a class looks the same in both tasks' overlays.
    """
    import cv2
    out = np.ascontiguousarray(rgb.copy())
    scale = max(0.3, min(out.shape[:2]) / 800)  # readable text on small and large images
    for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels):
        colour = tuple(int(c) for c in class_colours(int(label) + 1))
        top_left, bottom_right = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(out, top_left, bottom_right, colour, thickness)
        name = class_names[int(label)] if int(label) < len(class_names) else str(int(label))
        cv2.putText(out, f'{name} {score:.2f}', (top_left[0], max(top_left[1] - 2, 8)),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return out
