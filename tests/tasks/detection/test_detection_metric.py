"""CocoMetric against pycocotools' COCOeval on hand-made ground truth and predictions."""
import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tasks.detection import CocoMetric, DetSample
from tasks.detection.metrics import SUMMARY_KEYS

CATEGORIES = [dict(id=3, name='box'), dict(id=7, name='bar')]
IMAGES = [dict(id=1, height=200, width=300), dict(id=2, height=150, width=150),
          dict(id=3, height=100, width=100)]  # image 3: no objects
GT = [  # id, image, category, x, y, w, h, crowd; sizes give small, medium and large objects
    (1, 1, 3, 10, 10, 20, 20, 0), (2, 1, 3, 100, 50, 60, 40, 0), (3, 1, 7, 150, 100, 120, 90, 0),
    (4, 2, 7, 5, 5, 30, 30, 0), (5, 2, 3, 60, 60, 80, 70, 0), (6, 2, 7, 100, 0, 50, 40, 1),
]
# image, category, x, y, w, h, score: hits, a sloppy hit, a duplicate, a miss, false positives
DETECTIONS = [
    (1, 3, 11, 10, 20, 21, 0.9), (1, 3, 102, 52, 60, 40, 0.8), (1, 3, 100, 50, 60, 40, 0.3),
    (1, 7, 160, 110, 100, 80, 0.7), (2, 7, 5, 5, 30, 30, 0.95), (2, 3, 20, 20, 40, 40, 0.6),
    (2, 7, 105, 2, 40, 30, 0.5),  # on the crowd region: ignored, not a false positive
    (3, 3, 10, 10, 30, 30, 0.4),
]


def ground_truth_file(tmp_path):
    anns = [dict(id=i, image_id=img, category_id=cat, bbox=[x, y, w, h], area=float(w * h),
                 iscrowd=crowd) for i, img, cat, x, y, w, h, crowd in GT]
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(dict(images=IMAGES, annotations=anns, categories=CATEGORIES)))
    return path, anns


def reference_stats(gt_path, detections):
    """COCOeval exactly as its documentation runs it."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(detections), 'bbox')
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def samples(anns, detections):
    """DetSamples as the model would return them: predictions in original pixels."""
    cat_to_label = {3: 0, 7: 1}
    out = []
    for image in IMAGES:
        mine = [d for d in detections if d['image_id'] == image['id']]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d['bbox'] for d in mine)],
                             dtype=torch.float32).reshape(-1, 4)
        out.append(DetSample(
            img_path=f'{image["id"]}.png', img_id=image['id'],
            ori_shape=(image['height'], image['width']), img_shape=(64, 64),
            gt_coco=[a for a in anns if a['image_id'] == image['id']], pred_boxes=boxes,
            pred_scores=torch.tensor([d['score'] for d in mine]),
            pred_labels=torch.tensor([cat_to_label[d['category_id']] for d in mine])))
    return out


def run_metric(sample_list, **options):
    metric = CocoMetric(**options)
    metric.dataset_meta = dict(classes=('box', 'bar'), cat_ids=(3, 7))
    metric.process({}, sample_list[:2])
    metric.process({}, sample_list[2:])
    return metric.evaluate(len(sample_list))


def as_detections(rows):
    return [dict(image_id=img, category_id=cat, bbox=[x, y, w, h], score=s)
            for img, cat, x, y, w, h, s in rows]


def test_reproduces_pycocotools(tmp_path):
    gt_path, anns = ground_truth_file(tmp_path)
    detections = as_detections(DETECTIONS)
    reference = reference_stats(gt_path, detections)
    metrics = run_metric(samples(anns, detections), classwise=True)
    for key, stat in zip(SUMMARY_KEYS, reference.stats):
        assert metrics[f'coco/{key}'] == pytest.approx(stat, abs=1e-9), key
    assert 0.3 < metrics['coco/bbox_mAP'] < 0.9  # neither trivial nor perfect
    precision = reference.eval['precision']
    for index, name in enumerate(('box', 'bar')):
        values = precision[:, :, index, 0, -1]
        assert metrics[f'coco/AP.{name}'] == pytest.approx(values[values > -1].mean())
        values = precision[0, :, index, 0, -1]
        assert metrics[f'coco/AP50.{name}'] == pytest.approx(values[values > -1].mean())


def test_perfect_predictions_give_one(tmp_path):
    _, anns = ground_truth_file(tmp_path)
    perfect = [dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'],
                    score=1.0) for a in anns if not a['iscrowd']]
    metrics = run_metric(samples(anns, perfect))
    for key in SUMMARY_KEYS:
        assert metrics[f'coco/{key}'] == pytest.approx(1.0), key


def test_nothing_detected_and_no_truth_of_a_size(tmp_path):
    _, anns = ground_truth_file(tmp_path)
    metrics = run_metric(samples(anns, []))
    assert metrics['coco/bbox_mAP'] == 0.0
    small_only = [a for a in anns if a['id'] == 1]
    metrics = run_metric(samples(small_only, as_detections([(1, 3, 10, 10, 20, 20, 0.9)])))
    assert metrics['coco/bbox_mAP_s'] == pytest.approx(1.0)
    assert math.isnan(metrics['coco/bbox_mAP_l'])  # COCOeval's -1: nothing to score


def test_results_json_in_original_pixels_and_category_ids(tmp_path):
    _, anns = ground_truth_file(tmp_path)
    detections = as_detections(DETECTIONS)
    run_metric(samples(anns, detections), outfile_prefix=str(tmp_path / 'out' / 'val'))
    written = json.loads((tmp_path / 'out' / 'val.bbox.json').read_text())
    assert len(written) == len(detections)
    for got, expected in zip(written, detections):
        assert got['image_id'] == expected['image_id']
        assert got['category_id'] == expected['category_id']
        np.testing.assert_allclose(got['bbox'], expected['bbox'])
        assert got['score'] == pytest.approx(expected['score'])


def dense_image(count):
    """One 400 x 400 image holding ``count`` disjoint 8 px boxes, and perfect detections of them."""
    anns = [dict(id=i + 1, image_id=1, category_id=3, bbox=[(i % 20) * 20, (i // 20) * 20, 8, 8],
                 area=64.0, iscrowd=0) for i in range(count)]
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)],
                         dtype=torch.float32)
    sample = DetSample(img_path='1.png', img_id=1, ori_shape=(400, 400), img_shape=(400, 400),
                       gt_coco=anns, pred_boxes=boxes,
                       pred_scores=torch.linspace(1.0, 0.5, count),
                       pred_labels=torch.zeros(count, dtype=torch.long))
    return [sample]


def test_max_dets_lifts_the_recall_cap_of_dense_images(monkeypatch):
    from tasks.detection import metrics as metrics_module
    logged = []
    monkeypatch.setattr(metrics_module, 'print_log', lambda message, **_: logged.append(message))
    dense = dense_image(150)
    capped = run_metric(dense)  # COCO's 100 of 150 perfect detections: recall 2/3
    assert capped['coco/bbox_mAP'] == pytest.approx(2 / 3, abs=0.02)
    assert any('has 150 ground-truth boxes' in line and 'max_dets' in line for line in logged)
    logged.clear()
    lifted = run_metric(dense, max_dets=200)
    assert lifted['coco/bbox_mAP'] == pytest.approx(1.0)
    assert not any('ground-truth boxes' in line for line in logged)


@pytest.mark.parametrize('bad', [10, 0, 100.0, True, '300'])
def test_max_dets_must_be_an_int_above_ten(bad):
    with pytest.raises(ValueError, match='max_dets must be an int above 10'):
        CocoMetric(max_dets=bad)
