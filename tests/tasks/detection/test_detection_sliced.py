"""Sliced prediction of detectors: windows of the training crop, detections merged."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import ndimage

from effnet_backbones.registry import MODELS
from tasks.detection.sliced import (cut_at_inner_edges, intersection_over_smaller,
                                    join_continued_pieces, merge_window_detections,
                                    predict_sliced, resolve_det_test_cfg, suppress_covered)

SMALL = dict(backbone=dict(type='effnet_backbones.EfficientNet', arch='b0'), num_classes=2,
             fpn=dict(out_channels=64))


class BrightBlobDetector(nn.Module):
    """A detector of bright regions (connected components of channel 0 above 0.5): one box per
    region, class = the region's value in channel 1, score higher for smaller boxes, so a piece
    of an object cut by a window edge outscores the whole object."""

    def forward(self, images):
        outputs = []
        for image in images:
            regions, count = ndimage.label(image[0].numpy() > 0.5)
            boxes, labels = [], []
            for found in ndimage.find_objects(regions):
                rows, cols = found
                boxes.append([cols.start, rows.start, cols.stop, rows.stop])
                labels.append(int(image[1, rows.start, cols.start]))
            boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            outputs.append(dict(boxes=boxes, scores=1.0 / (1.0 + area),
                                labels=torch.tensor(labels, dtype=torch.long)))
        return outputs


def blob_image(blobs, size=(100, 150)):
    """Channel 0: the blobs (x1, y1, x2, y2) at 1; channel 1: each blob's class."""
    image = torch.zeros(2, *size)
    for (x1, y1, x2, y2), label in blobs:
        image[0, y1:y2, x1:x2] = 1.0
        image[1, y1:y2, x1:x2] = label
    return image


def sorted_boxes(detections):
    rows = torch.cat([detections['boxes'], detections['labels'][:, None].float()], 1).tolist()
    return sorted(rows)


def test_test_cfg_defaults_and_errors():
    assert resolve_det_test_cfg(None)['mode'] == 'whole'
    cfg = resolve_det_test_cfg(dict(mode='slide', window=128))
    assert cfg['window'] == (128, 128) and cfg['overlap'] == 0.25
    assert resolve_det_test_cfg(dict(mode='slide', window=(96, 160)))['window'] == (96, 160)
    for bad, message in [(dict(mode='slide'), r'needs model\.test_cfg\.window'),
                         (dict(mode='tile'), "'whole' or 'slide'"),
                         (dict(mode='slide', window=0), r'window must be a positive int'),
                         (dict(overlap=1.0), r'overlap must be a number in \[0, 1\)'),
                         (dict(match_thresh=0), r'match_thresh must be a number in \(0, 1\]'),
                         (dict(edge_margin=-1), 'edge_margin'),
                         (dict(batch_size=0), 'batch_size'),
                         (dict(windw=128), "unknown key 'windw'")]:
        with pytest.raises(ValueError, match=message):
            resolve_det_test_cfg(bad)


def test_cut_only_at_edges_inside_the_image():
    boxes = torch.tensor([[0.0, 10, 20, 30], [40, 40, 64, 50], [10, 10, 20, 20]])
    # a window at the image's top-left corner: its left and top edges are the image's
    assert cut_at_inner_edges(boxes, (0, 0, 64, 64), (100, 150), 2.0).tolist() == \
        [False, True, False]
    # a window in the middle: every edge is inside the image
    assert cut_at_inner_edges(boxes, (40, 20, 64, 64), (100, 150), 2.0).tolist() == \
        [True, True, False]
    # the window is the whole image: nothing is cut
    assert not cut_at_inner_edges(boxes, (0, 0, 64, 64), (64, 64), 2.0).any()


def test_intersection_over_smaller_and_covered_suppression():
    big = torch.tensor([[0.0, 0, 10, 10]])
    small = torch.tensor([[5.0, 5, 10, 10], [20, 20, 30, 30], [8, 0, 18, 10]])
    torch.testing.assert_close(intersection_over_smaller(big, small),
                               torch.tensor([[1.0, 0.0, 0.2]]))
    boxes = torch.cat([big, small])
    scores = torch.tensor([0.5, 0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 0, 1])
    # the small box inside the big one outscores it and suppresses it; another class never
    kept = suppress_covered(boxes, scores, labels, 0.5)
    assert kept.tolist() == [1, 2, 3]
    kept = suppress_covered(boxes, scores, labels, 0.5, kept_boxes=big,
                            kept_labels=torch.tensor([0]))
    assert kept.tolist() == [2, 3]


def test_merge_prefers_whole_views_over_higher_scored_pieces():
    detections = [dict(boxes=torch.tensor([[50.0, 10, 64, 30]]), scores=torch.tensor([0.9]),
                       labels=torch.tensor([0])),  # a piece, cut by the window's right edge
                  dict(boxes=torch.tensor([[50.0, 10, 70, 30], [50.5, 10, 70, 30]]),
                       scores=torch.tensor([0.6, 0.5]), labels=torch.tensor([0, 0]))]
    cut = [torch.tensor([True]), torch.tensor([False, False])]
    windows = [(0, 0, 64, 64), (43, 0, 64, 64)]
    merged = merge_window_detections(detections, cut, windows, nms_thresh=0.5, match_thresh=0.5,
                                     max_detections=100)
    assert merged['boxes'].tolist() == [[50.0, 10, 70, 30]]
    assert merged['scores'].tolist() == pytest.approx([0.6])


def test_pieces_join_only_where_they_continue_each_other():
    windows = torch.tensor([[0.0, 0, 64, 64], [43, 0, 107, 64], [0, 0, 64, 64]])
    # an object cut at x = 64 and x = 43: inside the shared columns 43-64 the pieces match
    boxes = torch.tensor([[20.0, 40, 64, 52], [43, 40, 107, 52], [30, 40, 64, 52]])
    joined = join_continued_pieces(boxes[:2], torch.tensor([0.3, 0.8]), torch.tensor([1, 1]),
                                   windows[:2], 0.5)
    assert joined['boxes'].tolist() == [[20.0, 40, 107, 52]] and joined['scores'].tolist() == \
        pytest.approx([0.8])
    # another class, or rows that do not match in the shared region: two objects
    apart = join_continued_pieces(boxes[:2], torch.ones(2), torch.tensor([0, 1]), windows[:2], 0.5)
    assert len(apart['boxes']) == 2
    shifted = boxes[:2].clone()
    shifted[1, 1::2] += 20
    assert len(join_continued_pieces(shifted, torch.ones(2), torch.ones(2, dtype=torch.long),
                                     windows[:2], 0.5)['boxes']) == 2
    # two pieces from the same window are never joined (the window saw both)
    same = join_continued_pieces(boxes[[0, 2]], torch.ones(2), torch.ones(2, dtype=torch.long),
                                 windows[[0, 2]], 0.5)
    assert len(same['boxes']) == 2


def test_sliced_prediction_equals_whole_image_detection():
    blobs = [((5, 5, 15, 15), 0),        # inside the first window only
             ((56, 20, 72, 30), 1),      # across the first windows' border, in the overlap
             ((60, 60, 70, 75), 0),      # in four windows
             ((20, 40, 140, 52), 1),     # longer than any window: cut in every one
             ((130, 85, 150, 100), 0)]   # at the image's corner
    image = blob_image(blobs)
    detector = BrightBlobDetector()
    whole = detector([image])[0]
    cfg = resolve_det_test_cfg(dict(mode='slide', window=64, batch_size=3))
    sliced = predict_sliced(detector, image, cfg, nms_thresh=0.5, max_detections=100)
    assert len(sliced['boxes']) == len(blobs)
    assert sorted_boxes(sliced) == sorted_boxes(whole)


def test_detector_model_slides_and_matches_whole_when_the_window_holds_the_image():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='effnet_backbones.RetinaNet', **SMALL,
                              score_thresh=0.0)).eval()
    image = torch.rand(3, 96, 120)
    whole = model.predict([image])[0]
    model.test_cfg = resolve_det_test_cfg(dict(mode='slide', window=128))
    held = model.predict([image])[0]  # one window, the whole image: the same detections
    torch.testing.assert_close(held.pred_boxes, whole.pred_boxes)
    torch.testing.assert_close(held.pred_scores, whole.pred_scores)
    model.test_cfg = resolve_det_test_cfg(dict(mode='slide', window=64, overlap=0.5))
    [sliced] = model.predict([image])
    assert 0 < len(sliced.pred_boxes) <= 100
    assert float(sliced.pred_boxes[:, 2].max()) <= 120 and float(sliced.pred_boxes[:, 3].max()) <= 96
    assert sliced.pred_scores.diff().le(0).all()  # highest first


def test_config_test_cfg_reaches_efficientdet_and_bad_values_name_the_key():
    model = MODELS.build(dict(type='effnet_backbones.EfficientDet', variant='d0', num_classes=2,
                              test_cfg=dict(mode='slide', window=128)))
    assert model.test_cfg['window'] == (128, 128)
    with pytest.raises(ValueError, match=r'model\.test_cfg\.overlap'):
        MODELS.build(dict(type='effnet_backbones.RetinaNet', **SMALL,
                          test_cfg=dict(mode='slide', window=64, overlap=-0.1)))


def test_blob_detector_finds_the_blobs():
    # the stand-in detector of the equality test above is itself right
    image = blob_image([((5, 5, 15, 15), 0), ((20, 30, 40, 35), 1)], size=(50, 50))
    found = BrightBlobDetector()([image])[0]
    assert sorted_boxes(found) == [[5.0, 5.0, 15.0, 15.0, 0.0], [20.0, 30.0, 40.0, 35.0, 1.0]]
    assert np.isclose(float(found['scores'][0]), 1 / 101)


def test_sliding_window_options_on_detection_configs():
    from mmengine.config import Config

    from tasks.engine.inference_options import apply_inference_options, fill_slide_window

    cfg = Config.fromfile('configs/retinanet_effb0_nuclei_demo.py')
    changed = apply_inference_options(cfg, sliding_window=True, overlap=0.5)
    # the window is the training pipeline's RandomCrop (128 x 128 in the demo recipe)
    assert changed == {'model.test_cfg.mode': 'slide', 'model.test_cfg.window': (128, 128),
                       'model.test_cfg.overlap': 0.5}
    assert resolve_det_test_cfg(cfg.model.test_cfg)['window'] == (128, 128)
    with pytest.raises(ValueError, match="--tta and --largest-component apply to segmentation"):
        apply_inference_options(Config.fromfile('configs/retinanet_effb0_nuclei_demo.py'),
                                tta=True)
    shipped = Config.fromfile('configs/efficientdet_d0_nuclei_demo.py')
    assert shipped.model.test_cfg == dict(mode='slide', window=128)
    shipped.model.test_cfg.window = None
    assert fill_slide_window(shipped) == (128, 128)
    # the RetinaNet recipe predicts sliced too, in windows of its RandomCrop (docs/quality.md 2e)
    retinanet = Config.fromfile('configs/retinanet_effb0_nuclei_demo.py')
    assert retinanet.model.test_cfg == dict(mode='slide')
    assert fill_slide_window(retinanet) == (128, 128)
