"""Box-aware albumentations pipelines: scale jitter, crop, flips and colour move boxes with pixels.

Steps are the same ``dict(type='<albumentations transform>', ...)`` entries as segmentation
pipelines (built by :func:`tasks.common.augment.build_transform`); here they run in an
``A.Compose`` with ``BboxParams``, so every geometric step also moves, clips and filters boxes.
They run after the image is resized to the network size, on float images in [0, 1].
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import albumentations as A
import numpy as np

from ..common.augment import build_transform, reseed

__all__ = ['scale_jitter_steps', 'build_box_pipeline', 'apply_box_pipeline']


def scale_jitter_steps(scale_jitter: Sequence[float], img_size: Tuple[int, int],
                       pad_value: float) -> List[A.BasicTransform]:
    """Rescale by a random factor in ``scale_jitter``, then crop or pad back to ``img_size``.

    This is MMDetection's RandomResize + RandomCrop + Pad: objects change size, the batch does not.
    """
    low, high = scale_jitter
    if not 0 < low <= high:
        raise ValueError(f'scale_jitter must be (low, high) with 0 < low <= high, e.g. '
                         f'(0.75, 1.5), got {tuple(scale_jitter)!r}')
    return [A.RandomScale(scale_limit=(low - 1.0, high - 1.0), p=1.0),
            A.RandomCrop(height=img_size[0], width=img_size[1], pad_if_needed=True,
                         pad_position='random', fill=pad_value)]


def build_box_pipeline(steps: Sequence[Dict[str, Any]] = (),
                       scale_jitter: Optional[Sequence[float]] = None,
                       img_size: Optional[Tuple[int, int]] = None, pad_value: float = 0.0,
                       min_visibility: float = 0.25) -> Optional[A.Compose]:
    """Scale jitter (if asked) then ``steps``, all box-aware; None when there is nothing to do.

    Args:
        steps: albumentations steps, e.g. ``[dict(type='HorizontalFlip', p=0.5)]``.
        scale_jitter: ``(low, high)`` random rescale factor; needs ``img_size``.
        img_size: the network input ``(H, W)`` that jittered images are cropped or padded to.
        pad_value: fill for padding, in [0, 1] image units.
        min_visibility: boxes keeping less than this fraction of their area after a crop are
            dropped from the targets (a sliver of an object is not that object).
    """
    transforms: List[A.BasicTransform] = []
    if scale_jitter is not None:
        if img_size is None:
            raise ValueError('scale_jitter needs img_size: jittered images are cropped or padded '
                             'back to it')
        transforms += scale_jitter_steps(scale_jitter, img_size, pad_value)
    transforms += [build_transform(step) for step in steps]
    if not transforms:
        return None
    return A.Compose(transforms, bbox_params=A.BboxParams(
        format='pascal_voc', label_fields=['labels'], min_visibility=min_visibility, clip=True))


def apply_box_pipeline(pipeline: Optional[A.Compose], image: np.ndarray, boxes: np.ndarray,
                       labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``pipeline`` on an image and its ``(N, 4)`` x1, y1, x2, y2 boxes with their labels."""
    if pipeline is None:
        return image, boxes, labels
    out = reseed(pipeline)(image=image, bboxes=boxes.reshape(-1, 4), labels=labels)
    boxes = np.asarray(out['bboxes'], np.float32).reshape(-1, 4)
    labels = np.asarray(out['labels'], np.int64).reshape(-1)
    # torchvision detectors reject boxes without positive width and height
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return out['image'], boxes[keep], labels[keep]
