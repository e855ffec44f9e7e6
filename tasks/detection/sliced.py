"""Sliced prediction: a detector trained on crops predicts windows of the crop size, merged.

A detector trained on random crops meets larger images at evaluation, and where the two sizes
differ so do the maps of its deepest levels and the means its SE gates take (docs/detection.md,
section 9: an EfficientDet-D0 trained on 128 px crops scored 0.25 mAP on 128 x 256 tiles and
0.49 on 128 px pieces of them). Predicting overlapping windows of the training size and merging
the detections (SAHI's sliced prediction) gives the model inputs of the size it learnt on.

Merging: a detection whose box touches a window edge that lies inside the image is *cut* (the
object may go on in the neighbouring window). Whole detections are merged by class-wise NMS
(the model's ``nms_thresh``); a cut detection is dropped where a whole one of its class covers
it (intersection over the smaller box at least ``match_thresh``), and the remaining pieces are
joined across windows where they continue each other (same class, matching boxes inside the
region the two windows share), so an object larger than the windows' overlap, cut in every
window, still comes out once, as the union of its pieces.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torchvision.ops import batched_nms

from ..common.windows import as_window, check_overlap, fitted_window, is_int, window_slices

__all__ = ['DEFAULT_DET_TEST_CFG', 'resolve_det_test_cfg', 'cut_at_inner_edges',
           'intersection_over_smaller', 'suppress_covered', 'join_continued_pieces',
           'merge_window_detections',
           'predict_sliced']

Detections = Dict[str, torch.Tensor]

#: Prediction settings a detector's ``test_cfg`` may change: the whole image at once by default.
DEFAULT_DET_TEST_CFG: Dict[str, Any] = dict(mode='whole', window=None, overlap=0.25,
                                            match_thresh=0.5, edge_margin=2.0, batch_size=8)


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f'{name} must be a number in (0, 1], got {value!r}')
    return float(value)


def resolve_det_test_cfg(test_cfg: Optional[Dict[str, Any]],
                         name: str = 'model.test_cfg') -> Dict[str, Any]:
    """A detector's prediction settings, every key checked; unknown keys and bad values raise a
    ValueError naming them.

    Args:
        test_cfg: ``mode`` ('whole' or 'slide'), ``window`` (int or (h, w) in network-input
            pixels; needed for 'slide'), ``overlap`` (fraction a window shares with its
            neighbour, [0, 1)), ``match_thresh`` (intersection over the smaller box above which
            a cut detection counts as covered, (0, 1]), ``edge_margin`` (pixels from an inner
            window edge within which a box counts as cut), ``batch_size`` (windows per forward).
        name: what error messages call the settings.
    """
    given = dict(test_cfg or {})
    unknown = sorted(set(given) - set(DEFAULT_DET_TEST_CFG))
    if unknown:
        raise ValueError(f'{name}: unknown key {unknown[0]!r}; valid: '
                         f'{sorted(DEFAULT_DET_TEST_CFG)}')
    cfg = dict(DEFAULT_DET_TEST_CFG, **given)
    if cfg['mode'] not in ('whole', 'slide'):
        raise ValueError(f"{name}.mode must be 'whole' or 'slide', got {cfg['mode']!r}")
    if cfg['mode'] == 'slide':
        if cfg['window'] is None:
            raise ValueError(f"{name}.mode='slide' needs {name}.window (the training crop, in "
                             f'network-input pixels), e.g. window=128 or window=(128, 256)')
        cfg['window'] = as_window(cfg['window'], f'{name}.window')
    cfg['overlap'] = check_overlap(cfg['overlap'], f'{name}.overlap')
    cfg['match_thresh'] = _fraction(cfg['match_thresh'], f'{name}.match_thresh')
    margin = cfg['edge_margin']
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or margin < 0:
        raise ValueError(f'{name}.edge_margin must be a number of pixels >= 0, got {margin!r}')
    cfg['edge_margin'] = float(margin)
    batch = cfg['batch_size']
    if not is_int(batch) or batch < 1:
        raise ValueError(f'{name}.batch_size must be a positive int, got {batch!r}')
    return cfg


def cut_at_inner_edges(boxes: torch.Tensor, window: Tuple[int, int, int, int],
                       image_size: Sequence[int], margin: float) -> torch.Tensor:
    """Which boxes (``(K, 4)`` x1 y1 x2 y2, window pixels) touch an edge of the window that lies
    inside the image, i.e. may show only part of their object.

    Args:
        boxes: the window's detections.
        window: ``(x0, y0, width, height)`` of the window in image pixels.
        image_size: the image's ``(H, W)``.
        margin: a box edge within this many pixels of such a window edge touches it.
    """
    x0, y0, width, height = window
    image_h, image_w = int(image_size[0]), int(image_size[1])
    cut = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    if x0 > 0:
        cut |= boxes[:, 0] <= margin
    if y0 > 0:
        cut |= boxes[:, 1] <= margin
    if x0 + width < image_w:
        cut |= boxes[:, 2] >= width - margin
    if y0 + height < image_h:
        cut |= boxes[:, 3] >= height - margin
    return cut


def _overlap(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Element-wise (broadcast) intersection boxes of x1 y1 x2 y2 boxes; empty ones come out
    with x2 < x1 or y2 < y1, which :func:`_area` counts as 0."""
    return torch.cat([torch.max(boxes1[..., :2], boxes2[..., :2]),
                      torch.min(boxes1[..., 2:], boxes2[..., 2:])], dim=-1)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(dim=-1)


def intersection_over_smaller(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` intersection area over the smaller box's area (1 where one box holds the
    other); 0 for empty boxes."""
    inter = _area(_overlap(boxes1[:, None], boxes2[None]))
    smaller = torch.min(_area(boxes1)[:, None], _area(boxes2)[None, :])
    return torch.where(smaller > 0, inter / smaller.clamp(min=1e-12), torch.zeros_like(inter))


def suppress_covered(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                     thresh: float, kept_boxes: Optional[torch.Tensor] = None,
                     kept_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Indices of the boxes kept by a greedy, score-ordered, class-wise suppression that drops a
    box covered by a box already kept (``kept_*`` first, then the higher-scored ones): covered
    means intersection over the smaller box >= ``thresh``.

    Args:
        boxes: ``(K, 4)`` candidates (x1 y1 x2 y2).
        scores: ``(K,)`` their scores.
        labels: ``(K,)`` their classes (boxes of other classes never suppress each other).
        thresh: the covered share, in (0, 1].
        kept_boxes: boxes that are kept already and suppress candidates they cover.
        kept_labels: their classes.
    """
    order = scores.argsort(descending=True)
    if len(order) == 0:
        return order
    covered = intersection_over_smaller(boxes[order], boxes[order]) >= thresh
    covered &= labels[order][:, None] == labels[order][None, :]
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    if kept_boxes is not None and len(kept_boxes):
        by_kept = intersection_over_smaller(boxes[order], kept_boxes) >= thresh
        by_kept &= labels[order][:, None] == kept_labels[None, :]
        suppressed |= by_kept.any(dim=1)
    keep = []
    for rank in range(len(order)):
        if suppressed[rank]:
            continue
        keep.append(rank)
        suppressed |= covered[rank]
    return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]


def join_continued_pieces(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                          windows: torch.Tensor, thresh: float) -> Detections:
    """Cut detections joined into one box per object where pieces from different windows
    continue each other: same class, and inside the region their two windows share, their boxes
    (clipped to it) overlap with IoU >= ``thresh``. A joined object gets the union of its
    pieces' boxes and their highest score.

    Args:
        boxes: ``(K, 4)`` pieces in image pixels.
        scores: ``(K,)`` their scores.
        labels: ``(K,)`` their classes.
        windows: ``(K, 4)`` the window (x1 y1 x2 y2, image pixels) each piece came from.
        thresh: the IoU inside the shared region at which two pieces are one object.
    """
    count = len(boxes)
    if count < 2:
        return dict(boxes=boxes, scores=scores, labels=labels)
    shared = _overlap(windows[:, None], windows[None])  # (K, K, 4) region both windows saw
    first, second = _overlap(boxes[:, None], shared), _overlap(boxes[None], shared)
    inter = _area(_overlap(first, second))
    union = _area(first) + _area(second) - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
    other_window = (windows[:, None, :] != windows[None, :, :]).any(dim=2)
    linked = (iou >= thresh) & other_window & (labels[:, None] == labels[None, :])
    group = list(range(count))  # union-find over the links

    def root(index: int) -> int:
        while group[index] != index:
            group[index] = group[group[index]]
            index = group[index]
        return index

    for a, b in linked.nonzero().tolist():
        group[root(a)] = root(b)
    roots = torch.tensor([root(index) for index in range(count)], device=boxes.device)
    joined_boxes, joined_scores, joined_labels = [], [], []
    for member_root in roots.unique().tolist():
        members = roots == member_root
        joined_boxes.append(torch.cat([boxes[members, :2].min(dim=0).values,
                                       boxes[members, 2:].max(dim=0).values]))
        joined_scores.append(scores[members].max())
        joined_labels.append(labels[members][0])
    return dict(boxes=torch.stack(joined_boxes), scores=torch.stack(joined_scores),
                labels=torch.stack(joined_labels))


def merge_window_detections(detections: Sequence[Detections], cut: Sequence[torch.Tensor],
                            windows: Sequence[Tuple[int, int, int, int]], nms_thresh: float,
                            match_thresh: float, max_detections: int) -> Detections:
    """One image's detections from its windows' (boxes already in image pixels).

    Whole detections: class-wise NMS at ``nms_thresh``. Cut ones: dropped where a kept whole
    detection of their class covers them (intersection over the smaller box >=
    ``match_thresh``); the rest joined across windows (:func:`join_continued_pieces`) and
    suppressed where a whole detection or a higher-scored joined one covers them. At most
    ``max_detections``, highest scores first.

    Args:
        detections: per window ``boxes`` (K, 4), ``scores`` (K,), ``labels`` (K,).
        cut: per window, which of its detections touch an inner window edge.
        windows: per window ``(x0, y0, width, height)`` in image pixels.
        nms_thresh: IoU above which NMS drops the lower-scored of two whole detections.
        match_thresh: intersection over the smaller box at which a detection is covered, and
            the IoU in a shared region at which two pieces are one object.
        max_detections: most detections returned.
    """
    boxes = torch.cat([d['boxes'] for d in detections])
    scores = torch.cat([d['scores'] for d in detections])
    labels = torch.cat([d['labels'] for d in detections])
    window_boxes = torch.cat([boxes.new_tensor([[x0, y0, x0 + width, y0 + height]]).expand(
        len(d['boxes']), 4) for d, (x0, y0, width, height) in zip(detections, windows)])
    is_cut = torch.cat(list(cut))
    whole = (~is_cut).nonzero().flatten()
    whole = whole[batched_nms(boxes[whole], scores[whole], labels[whole], nms_thresh)]
    parts = is_cut.nonzero().flatten()
    covered = torch.zeros(len(parts), dtype=torch.bool, device=boxes.device)
    if len(parts) and len(whole):
        covered = ((intersection_over_smaller(boxes[parts], boxes[whole]) >= match_thresh) &
                   (labels[parts][:, None] == labels[whole][None, :])).any(dim=1)
    parts = parts[~covered]
    joined = join_continued_pieces(boxes[parts], scores[parts], labels[parts],
                                   window_boxes[parts], match_thresh)
    kept = suppress_covered(joined['boxes'], joined['scores'], joined['labels'], match_thresh,
                            boxes[whole], labels[whole])
    merged_boxes = torch.cat([boxes[whole], joined['boxes'][kept]])
    merged_scores = torch.cat([scores[whole], joined['scores'][kept]])
    merged_labels = torch.cat([labels[whole], joined['labels'][kept]])
    order = merged_scores.argsort(descending=True)[:max_detections]
    return dict(boxes=merged_boxes[order], scores=merged_scores[order],
                labels=merged_labels[order])


def predict_sliced(detect: Callable[[List[torch.Tensor]], List[Detections]],
                   image: torch.Tensor, test_cfg: Dict[str, Any], nms_thresh: float,
                   max_detections: int) -> Detections:
    """Detections on one ``(C, H, W)`` image from windows of ``test_cfg['window']``.

    Args:
        detect: the detector in eval mode: images -> per image ``boxes``/``scores``/``labels``
            in the pixels of that image.
        image: the network input (resized and normalised as in training).
        test_cfg: settings from :func:`resolve_det_test_cfg` (``mode='slide'``).
        nms_thresh: the detector's NMS IoU, used again across windows.
        max_detections: the detector's detections per image.
    """
    size = tuple(image.shape[-2:])
    window = fitted_window(size, test_cfg['window'])
    slices = window_slices(size, window, test_cfg['overlap'])
    detections: List[Detections] = []
    cut: List[torch.Tensor] = []
    placements: List[Tuple[int, int, int, int]] = []
    batch = test_cfg['batch_size']
    for first in range(0, len(slices), batch):
        chunk = slices[first:first + batch]
        outputs = detect([image[:, rows, columns] for rows, columns in chunk])
        for (rows, columns), output in zip(chunk, outputs):
            placed = (columns.start, rows.start, window[1], window[0])
            placements.append(placed)
            cut.append(cut_at_inner_edges(output['boxes'], placed, size, test_cfg['edge_margin']))
            offset = output['boxes'].new_tensor([columns.start, rows.start] * 2)
            detections.append(dict(output, boxes=output['boxes'] + offset))
    return merge_window_detections(detections, cut, placements, nms_thresh,
                                   test_cfg['match_thresh'], max_detections)
