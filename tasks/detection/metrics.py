"""``CocoMetric``: COCO box mAP with pycocotools' COCOeval, in the original image pixels."""
from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from .coco import coco_index

__all__ = ['CocoMetric', 'SUMMARY_KEYS', 'to_coco_results', 'coco_evaluate']

#: COCOeval.stats[0:6] under MMDetection's names (AP at IoU .50:.95, .50, .75; small/medium/large)
SUMMARY_KEYS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l')
#: detections per image that COCO's AP counts (and the recipes keep) by default
COCO_MAX_DETS = 100


def _mean_precision(values: np.ndarray) -> float:
    """Mean of COCOeval precisions, as its summary computes it; -1 marks what could not be scored
    (no ground truth of that class or size), and nothing scorable gives NaN."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float('nan')


def to_coco_results(img_id: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    cat_ids: Sequence[int]) -> List[Dict[str, Any]]:
    """Detections as COCO results entries: ``bbox`` as x, y, width, height."""
    return [dict(image_id=int(img_id), category_id=int(cat_ids[int(label)]),
                 bbox=[float(x1), float(y1), float(x2 - x1), float(y2 - y1)], score=float(score))
            for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels)]


def check_max_dets(max_dets: int) -> int:
    """``max_dets`` as COCOeval's third (AP) detection limit: an int above 10."""
    if isinstance(max_dets, bool) or not isinstance(max_dets, int) or max_dets <= 10:
        raise ValueError(f'max_dets must be an int above 10 (COCOeval also scores at 1 and 10 '
                         f'detections per image), got {max_dets!r}')
    return max_dets


def coco_evaluate(ground_truth: Dict[str, Any], detections: List[Dict[str, Any]],
                  classwise: bool = False, class_names: Sequence[str] = (),
                  max_dets: int = COCO_MAX_DETS) -> Dict[str, float]:
    """COCOeval (bbox) of ``detections`` against a COCO ground-truth dict.

    Returns :data:`SUMMARY_KEYS` and, with ``classwise``, ``AP.<class>`` and ``AP50.<class>``.
    ``max_dets`` is how many detections per image (highest scores first) AP counts: COCO's 100
    by default.
    """
    from pycocotools.cocoeval import COCOeval
    max_dets = check_max_dets(max_dets)
    gt = coco_index(ground_truth)
    if detections:
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(detections)
    else:  # loadRes cannot take an empty list; no detections means AP 0 wherever there is truth
        dt = coco_index(dict(images=ground_truth['images'], annotations=[],
                             categories=ground_truth['categories']))
    evaluator = COCOeval(gt, dt, 'bbox')
    evaluator.params.imgIds = [image['id'] for image in ground_truth['images']]
    evaluator.params.catIds = [category['id'] for category in ground_truth['categories']]
    evaluator.params.maxDets = [1, 10, max_dets]
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.evaluate()
        evaluator.accumulate()
    # precision: [IoU threshold, recall, category, area range (all, s, m, l), max dets (-1: ours)].
    # Read it directly: COCOeval.summarize() scores its first line at 100 detections whatever
    # maxDets holds (NaN for any other max_dets).
    precision = evaluator.eval['precision']
    at_75 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.75)))
    metrics = {key: _mean_precision(values) for key, values in zip(SUMMARY_KEYS, (
        precision[..., 0, -1], precision[0, ..., 0, -1], precision[at_75, ..., 0, -1],
        precision[..., 1, -1], precision[..., 2, -1], precision[..., 3, -1]))}
    if max_dets == COCO_MAX_DETS:  # COCO's own summary, average recall included
        with contextlib.redirect_stdout(summary):
            evaluator.summarize()
    else:
        summary.write(''.join(f'{key} (at most {max_dets} detections per image) = '
                              f'{value:.3f}\n' for key, value in metrics.items()))
    print_log('\n' + summary.getvalue(), logger='current')
    if classwise:
        for index, name in enumerate(class_names):
            metrics[f'AP.{name}'] = _mean_precision(precision[:, :, index, 0, -1])
            metrics[f'AP50.{name}'] = _mean_precision(precision[0, :, index, 0, -1])
    return metrics


class CocoMetric(BaseMetric):
    """COCO box AP (pycocotools COCOeval) of the predictions, in original image pixels.

    Keys (with the default prefix ``coco/``): ``bbox_mAP``, ``bbox_mAP_50``, ``bbox_mAP_75``,
    ``bbox_mAP_s``, ``bbox_mAP_m``, ``bbox_mAP_l``, and with ``classwise`` ``AP.<class>`` and
    ``AP50.<class>``. A value COCOeval cannot compute (no ground truth of that size) is NaN.

    The ground truth is the dataset's cleaned annotations carried by each sample (crowd boxes
    included, which COCOeval ignores), so it matches the split exactly, negatives included.

    Args:
        classwise: also report AP and AP50 per class.
        outfile_prefix: write the detections to ``<prefix>.bbox.json`` (COCO results format).
        collect_device: 'cpu' or 'gpu', for distributed evaluation.
        prefix: key prefix; default 'coco'.
        max_dets: detections per image that AP counts (COCO's 100). Images with more objects
            than this cannot reach full recall: raise it together with the model's
            ``detections_per_img`` (dense cells, crowds); the metric warns when a validation
            image has more ground-truth boxes than ``max_dets``.
    """

    default_prefix: Optional[str] = 'coco'

    def __init__(self, classwise: bool = False, outfile_prefix: Optional[str] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None,
                 max_dets: int = COCO_MAX_DETS) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.classwise = classwise
        self.max_dets = check_max_dets(max_dets)
        self.outfile_prefix = outfile_prefix

    def _classes(self) -> 'tuple[List[str], List[int]]':
        meta = self.dataset_meta or {}
        if not meta.get('classes') or not meta.get('cat_ids'):
            raise ValueError('CocoMetric needs a dataset whose metainfo has classes and cat_ids '
                             '(CocoDetDataset provides them)')
        return list(meta['classes']), list(meta['cat_ids'])

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Keep each image's ground truth and predictions (as numpy, on the CPU)."""
        for sample in data_samples:
            if sample.gt_coco is None:
                raise ValueError(f'{sample.img_path} has no ground truth to score against')
            if sample.pred_boxes is None:
                raise ValueError(f'{sample.img_path} has no predictions; run the model in '
                                 f"'predict' mode")
            self.results.append(dict(
                img_id=int(sample.img_id), height=int(sample.ori_shape[0]),
                width=int(sample.ori_shape[1]), gt=list(sample.gt_coco),
                boxes=sample.pred_boxes.detach().cpu().numpy(),
                scores=sample.pred_scores.detach().cpu().numpy(),
                labels=sample.pred_labels.detach().cpu().numpy()))

    def compute_metrics(self, results: List[Dict[str, Any]]) -> Dict[str, float]:
        """COCOeval over every image seen (each counted once)."""
        names, cat_ids = self._classes()
        images: Dict[int, Dict[str, Any]] = {}
        for result in results:  # distributed samplers may repeat images to even out ranks
            images.setdefault(result['img_id'], result)
        annotations = [dict(ann, id=index + 1)  # COCOeval treats id 0 as "unmatched": renumber
                       for index, ann in enumerate(a for r in images.values() for a in r['gt'])]
        ground_truth = dict(
            images=[dict(id=i, height=r['height'], width=r['width']) for i, r in images.items()],
            annotations=annotations,
            categories=[dict(id=cat_id, name=name) for cat_id, name in zip(cat_ids, names)])
        densest = max((len([a for a in r['gt'] if not a.get('iscrowd', 0)]) for r in
                       images.values()), default=0)
        if densest > self.max_dets:
            print_log(f'a validation image has {densest} ground-truth boxes, more than the '
                      f'{self.max_dets} detections per image that AP counts: recall is capped; '
                      f'raise val_evaluator.max_dets and model.detections_per_img above {densest}',
                      logger='current', level=logging.WARNING)
        detections = [entry for img_id, r in images.items() for entry in
                      to_coco_results(img_id, r['boxes'], r['scores'], r['labels'], cat_ids)]
        if self.outfile_prefix:
            path = Path(f'{self.outfile_prefix}.bbox.json')
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(detections))
            print_log(f'detections written to {path}', logger='current')
        return coco_evaluate(ground_truth, detections, self.classwise, names, self.max_dets)
