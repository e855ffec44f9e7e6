"""Inference tricks of nnU-Net/MONAI: Gaussian sliding windows, flip/rotation TTA, the largest
connected component; SegmentationModel's test_cfg; the command-line options' config mapping;
inferencers that refuse to overwrite."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from effnet_backbones.registry import MODELS
from tasks.common.inference import Inferencer, refuse_existing
from tasks.engine import apply_inference_options
from tasks.engine.inference_options import fill_slide_window
from tasks.segmentation import SegSample
from tasks.segmentation.model import resolve_test_cfg
from tasks.segmentation.postprocess import keep_largest_component
from tasks.segmentation.sliding_window import (gaussian_importance_map, sliding_window_logits,
                                               window_starts, window_weight_sum)
from tasks.segmentation.tta import tta_logits, tta_views
from tool_loader import ROOT

QUICK = str(ROOT / 'configs/unet_effb0_quick.py')


def tiny_model(**kwargs):
    cfg = dict(type='effnet_backbones.SegmentationModel', arch='b0', in_channels=1, num_classes=3,
               decoder_options=dict(decoder_channels=(16, 16, 16, 16, 16)))
    return MODELS.build({**cfg, **kwargs}).eval()


def pointwise(in_channels=2, out_channels=3):
    """A 1x1 convolution: translation-equivariant, and commutes with flips and rotations."""
    conv = torch.nn.Conv2d(in_channels, out_channels, 1)
    return lambda x: conv(x).detach()


def asymmetric(in_channels=2, out_channels=3):
    """A 3x3 convolution with zero padding and random weights: no flip or rotation commutes."""
    conv = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)
    return lambda x: conv(x).detach()


# ---------------------------------------------------------------- Gaussian importance map


@pytest.mark.parametrize('window', [(41, 41), (16, 24), (7, 64), 33])
def test_gaussian_map_peaks_at_one_is_symmetric_and_has_no_zeros(window):
    weights = gaussian_importance_map(window)
    sides = (window, window) if isinstance(window, int) else window
    assert weights.shape == sides and weights.dtype == torch.float32
    assert weights.max() == 1.0
    assert torch.equal(weights, weights.flip(0)) and torch.equal(weights, weights.flip(1))
    assert (weights > 0).all()
    # decreasing away from the centre along both axes
    centre = tuple((side - 1) // 2 for side in sides)
    row = weights[centre[0]]
    assert (row[:centre[1] + 1].diff() >= 0).all() and (row[centre[1] + 1:].diff() <= 0).all()


def test_gaussian_sigma_is_the_scale_times_each_side():
    weights = gaussian_importance_map((41, 81), sigma_scale=5 / 41, dtype=torch.float64)
    # sigma 5 rows, 5 * 81 / 41 columns: one sigma from the centre the weight is exp(-1/2)
    assert weights[20 + 5, 40].item() == pytest.approx(math.exp(-0.5), rel=1e-12)
    columns = 5 * 81 / 41
    assert weights[20, 40 + 20].item() == pytest.approx(math.exp(-0.5 * (20 / columns) ** 2))


def test_gaussian_underflow_is_replaced_by_the_smallest_weight():
    weights = gaussian_importance_map(64, sigma_scale=0.01)  # exp(-0.5 * 50^2) underflows
    assert (weights > 0).all() and weights.max() == 1.0
    assert weights[0, 0] == weights[weights > 0].min()


# ---------------------------------------------------------------- window positions


@pytest.mark.parametrize('size,window,overlap', [
    (200, 64, 0.5), (70, 64, 0.5), (256, 64, 0.0), (1000, 128, 0.75), (65, 64, 0.9),
    (97, 32, 0.25), (129, 64, 0.0)])
def test_window_starts_cover_the_axis_evenly(size, window, overlap):
    starts = window_starts(size, window, overlap)
    assert starts[0] == 0 and starts[-1] == size - window
    steps = np.diff(starts)
    assert steps.max() <= math.ceil(window * (1 - overlap)) and steps.min() > 0
    assert steps.max() - steps.min() <= 1  # evenly spread
    covered = np.zeros(size, bool)
    for start in starts:
        covered[start:start + window] = True
    assert covered.all()


def test_window_starts_match_nnunet_and_collapse_for_small_axes():
    # nnU-Net's compute_steps_for_sliding_window for 200 voxels, patch 64, step 0.5
    assert window_starts(200, 64, 0.5) == [0, 27, 54, 82, 109, 136]
    assert window_starts(256, 64, 0.0) == [0, 64, 128, 192]
    assert window_starts(64, 64, 0.5) == [0] and window_starts(10, 64, 0.5) == [0]


@pytest.mark.parametrize('overlap', [1.0, -0.1, 1.5, '0.5', True])
def test_bad_overlap_is_named(overlap):
    with pytest.raises(ValueError, match=r'overlap must be a number in \[0, 1\).*' +
                       repr(overlap).replace('.', r'\.')):
        window_starts(100, 32, overlap)


# ---------------------------------------------------------------- sliding window


@pytest.mark.parametrize('gaussian', [True, False])
def test_weights_accumulate_as_summed_by_hand(gaussian):
    size, window, overlap = (50, 90), (32, 40), 0.5
    by_hand = torch.zeros(size)
    weight = gaussian_importance_map(window) if gaussian else torch.ones(window)
    for y in window_starts(size[0], window[0], overlap):
        for x in window_starts(size[1], window[1], overlap):
            by_hand[y:y + window[0], x:x + window[1]] += weight
    assert torch.allclose(window_weight_sum(size, window, overlap, gaussian), by_hand,
                          rtol=1e-6, atol=0)


@pytest.mark.parametrize('gaussian', [True, False])
def test_overlapping_predictions_are_the_weighted_average(gaussian):
    """Window i predicts the constant i: every pixel is sum_i w_i i / sum_i w_i, and a constant
    function gives back exactly its constant (the division is by the right weights)."""
    inputs = torch.zeros(2, 1, 50, 90)
    size, window, overlap = (50, 90), (32, 40), 0.5
    calls = []

    def window_index(batch):
        values = torch.arange(len(calls), len(calls) + len(batch), dtype=torch.float64)
        calls.extend(values.tolist())
        return values.view(-1, 1, 1, 1).expand(-1, 2, *batch.shape[-2:]).clone()

    result = sliding_window_logits(window_index, inputs.double(), window, overlap, gaussian,
                                   window_batch_size=3)
    weight = gaussian_importance_map(window, dtype=torch.float64) if gaussian \
        else torch.ones(window, dtype=torch.float64)
    numerator = torch.zeros(2, *size, dtype=torch.float64)
    denominator = torch.zeros(size, dtype=torch.float64)
    index = 0
    for image in range(2):
        for y in window_starts(size[0], window[0], overlap):
            for x in window_starts(size[1], window[1], overlap):
                numerator[image, y:y + window[0], x:x + window[1]] += weight * index
                if image == 0:
                    denominator[y:y + window[0], x:x + window[1]] += weight
                index += 1
    assert index == len(calls) == 2 * 4 * 3
    torch.testing.assert_close(result[:, 0], numerator / denominator, rtol=1e-12, atol=0)
    constant = sliding_window_logits(lambda b: torch.full((len(b), 3, *b.shape[-2:]), 2.75),
                                     inputs, window, overlap, gaussian)
    torch.testing.assert_close(constant, torch.full((2, 3, *size), 2.75), rtol=1e-6, atol=0)


def test_windows_are_batched_across_images_and_bounded():
    inputs = torch.randn(3, 2, 40, 40)
    shapes = []

    def record(batch):
        shapes.append(tuple(batch.shape))
        return batch[:, :1]

    sliding_window_logits(record, inputs, 32, overlap=0.5, window_batch_size=5)  # 4 per image
    assert shapes == [(5, 2, 32, 32), (5, 2, 32, 32), (2, 2, 32, 32)]


def test_window_shrinks_to_a_smaller_image_side():
    shapes = []
    predict = pointwise()
    inputs = torch.randn(1, 2, 20, 100)
    out = sliding_window_logits(lambda b: shapes.append(tuple(b.shape)) or predict(b), inputs, 64)
    assert {shape[-2:] for shape in shapes} == {(20, 64)}
    assert out.shape == (1, 3, 20, 100)


@pytest.mark.parametrize('window,overlap,gaussian', [
    (16, 0.5, True), ((24, 10), 0.0, True), ((7, 33), 0.75, False), (1, 0.0, True)])
def test_a_pointwise_model_slides_to_its_whole_image_prediction(window, overlap, gaussian):
    predict = pointwise()
    inputs = torch.randn(2, 2, 37, 45)
    torch.testing.assert_close(sliding_window_logits(predict, inputs, window, overlap, gaussian),
                               predict(inputs), rtol=1e-5, atol=1e-6)


def test_a_window_covering_the_image_gives_the_model_logits():
    model = tiny_model()
    inputs = torch.randn(1, 1, 50, 70)
    with torch.no_grad():
        whole = model.logits(inputs)
        for window in ((50, 70), 96):
            slid = sliding_window_logits(model.logits, inputs, window)
            torch.testing.assert_close(slid, whole, rtol=1e-5, atol=1e-5 * whole.abs().max().item())


def test_sliding_window_bad_arguments():
    predict = pointwise()
    inputs = torch.randn(1, 2, 20, 20)
    for window in (0, (3,), (8, -1), 2.5, 'big'):
        with pytest.raises(ValueError, match='window must be a positive int'):
            sliding_window_logits(predict, inputs, window)
    with pytest.raises(ValueError, match='window_batch_size'):
        sliding_window_logits(predict, inputs, 8, window_batch_size=0)
    with pytest.raises(ValueError, match='overlap'):
        sliding_window_logits(predict, inputs, 8, overlap=1)
    with pytest.raises(ValueError, match='returned shape'):
        sliding_window_logits(lambda b: b[:, :, :4], inputs, 8)


# ---------------------------------------------------------------- test-time augmentation


def test_tta_of_a_flip_invariant_model_is_its_prediction():
    predict = pointwise()
    inputs = torch.randn(2, 2, 12, 17)
    for flips, rot90 in ((('h', 'v'), False), (('h',), False), (('h', 'v'), True)):
        torch.testing.assert_close(tta_logits(predict, inputs, flips, rot90), predict(inputs))


def test_tta_averages_every_flip_combination_mapped_back():
    predict = asymmetric()
    inputs = torch.randn(2, 2, 12, 17)
    h, v, hv = (-1,), (-2,), (-2, -1)
    manual = (predict(inputs) + sum(predict(inputs.flip(dims)).flip(dims) for dims in (h, v, hv))
              ) / 4
    torch.testing.assert_close(tta_logits(predict, inputs), manual)
    only_h = (predict(inputs) + predict(inputs.flip(h)).flip(h)) / 2
    torch.testing.assert_close(tta_logits(predict, inputs, flips=('h',)), only_h)
    assert not torch.allclose(manual, predict(inputs))  # the views do differ for this function


def test_rot90_views_of_a_non_square_input_are_rotated_back():
    inputs = torch.randn(1, 2, 6, 10)
    shapes = []
    conv = asymmetric()

    def predict(batch):
        shapes.append(tuple(batch.shape[-2:]))
        return conv(batch)

    result = tta_logits(predict, inputs, flips=(), rot90=True)
    assert shapes == [(6, 10), (10, 6), (6, 10), (10, 6)]
    manual = sum(torch.rot90(conv(torch.rot90(inputs, k, (-2, -1))), -k, (-2, -1))
                 for k in range(4)) / 4
    torch.testing.assert_close(result, manual)
    assert result.shape == (1, 3, 6, 10)
    assert len(tta_views(('h', 'v'), rot90=True)) == 4 + 3  # rotations of the unflipped input


def test_bad_flip_names_are_named():
    with pytest.raises(ValueError, match=r"unknown flip 'x'.*\['h', 'v'\]"):
        tta_logits(pointwise(), torch.randn(1, 2, 4, 4), flips=('h', 'x'))
    with pytest.raises(ValueError, match='list of flip names'):
        tta_logits(pointwise(), torch.randn(1, 2, 4, 4), flips='hv')


# ---------------------------------------------------------------- largest component


def test_largest_component_per_class_in_2d():
    labels = np.zeros((8, 10), np.uint8)
    labels[0:3, 0:3] = 1     # 9 px: kept
    labels[6:8, 8:10] = 1    # 4 px: removed
    labels[0:2, 6:10] = 2    # 8 px: kept
    labels[5, 0] = 2         # 1 px: removed
    labels[7, 4] = 3         # a single component: kept
    original = labels.copy()
    cleaned = keep_largest_component(labels)
    assert np.array_equal(labels, original) and cleaned.dtype == np.uint8
    expected = original.copy()
    expected[6:8, 8:10] = 0
    expected[5, 0] = 0
    assert np.array_equal(cleaned, expected)
    only_two = keep_largest_component(labels, classes=[2])
    assert only_two[6:8, 8:10].tolist() == [[1, 1], [1, 1]] and only_two[5, 0] == 0


def test_connectivity_decides_whether_diagonal_pixels_connect():
    labels = np.zeros((5, 5), np.int64)
    labels[0:2, 0:2] = 1
    labels[2, 2] = 1  # touches the block only at a corner
    assert keep_largest_component(labels, connectivity=1)[2, 2] == 0
    assert keep_largest_component(labels, connectivity=2)[2, 2] == 1


def test_largest_component_in_3d_connects_through_slices():
    labels = np.zeros((3, 6, 6), np.int16)
    labels[0, 0:2, 0:2] = 1  # 4 voxels in slice 0 ...
    labels[1, 1, 1] = 1      # ... connected only along z to ...
    labels[2, 1:3, 1:3] = 1  # ... 4 voxels in slice 2: one component of 9
    labels[0, 4:6, 3:6] = 1  # 6 voxels elsewhere in slice 0: removed
    cleaned = keep_largest_component(labels)
    assert cleaned.dtype == np.int16 and cleaned.sum() == 9
    assert cleaned[0, 4:6, 3:6].sum() == 0 and cleaned[2, 1:3, 1:3].all()
    # slice by slice the same map would keep the 6-voxel block of slice 0 instead
    assert keep_largest_component(labels[0])[4:6, 3:6].all()


def test_largest_component_bad_arguments():
    with pytest.raises(ValueError, match='2D or 3D'):
        keep_largest_component(np.zeros(5, int))
    with pytest.raises(ValueError, match='connectivity must be an int in 1..2'):
        keep_largest_component(np.zeros((4, 4), int), connectivity=3)
    with pytest.raises(ValueError, match='background'):
        keep_largest_component(np.zeros((4, 4), int), classes=[0, 1])


# ---------------------------------------------------------------- SegmentationModel.test_cfg


def test_default_test_cfg_predicts_as_before():
    model = tiny_model()
    inputs = torch.randn(1, 1, 40, 50)
    with torch.no_grad():
        assert torch.equal(model.predict_logits(inputs), model.logits(inputs))
        assert torch.equal(model.predict(inputs)[0].pred_mask, model.logits(inputs).argmax(1)[0])


@pytest.mark.parametrize('test_cfg', [
    dict(mode='slide', window=64),
    dict(mode='slide', window=(64, 48), overlap=0.25, gaussian=False, window_batch_size=1),
    dict(tta=dict(flips=('h', 'v'), rot90=True)),
    dict(mode='slide', window=64, tta=dict(), largest_component=True),
])
def test_sliding_window_and_tta_predict_odd_sizes(test_cfg):
    model = tiny_model(test_cfg=test_cfg)
    inputs = torch.randn(1, 1, 70, 90)
    with torch.no_grad():
        logits = model.predict_logits(inputs)
        predicted = model.predict(inputs)
    assert logits.shape == (1, 3, 70, 90) and torch.isfinite(logits).all()
    assert predicted[0].pred_mask.shape == (70, 90)


def test_tta_wraps_the_sliding_window(monkeypatch):
    model = tiny_model(test_cfg=dict(mode='slide', window=32, tta=dict(flips=('h',))))
    shapes = []
    logits = model.logits
    monkeypatch.setattr(model, 'logits', lambda x: shapes.append(tuple(x.shape)) or logits(x))
    with torch.no_grad():
        model.predict_logits(torch.randn(1, 1, 40, 40))
    assert shapes == [(4, 1, 32, 32)] * 2  # every view slid over in 4 windows


def test_predict_with_tricks_predicts_each_image_at_its_own_size(monkeypatch):
    model = tiny_model(test_cfg=dict(tta=dict(flips=('h', 'v'))))
    sizes = []
    logits = model.logits
    monkeypatch.setattr(model, 'logits', lambda x: sizes.append(tuple(x.shape[-2:])) or logits(x))
    small, large = torch.randn(1, 40, 50), torch.randn(1, 64, 64)
    batch = torch.zeros(2, 1, 64, 64)
    batch[0, :, :40, :50], batch[1] = small, large
    samples = [SegSample('a', (40, 50)), SegSample('b', (64, 64))]
    with torch.no_grad():
        predicted = model.predict(batch, samples)
        alone = model.predict(small[None])[0].pred_mask
    assert set(sizes[:8]) == {(40, 50), (64, 64)}  # not the padded batch: its padding would flip
    assert torch.equal(predicted[0].pred_mask, alone)
    assert predicted[1].pred_mask.shape == (64, 64)


def test_predict_keeps_the_largest_component(monkeypatch):
    model = tiny_model(test_cfg=dict(largest_component=True))
    designed = torch.zeros(1, 3, 20, 20)
    designed[:, 0] = 1.0
    designed[:, 1, 2:8, 2:8] = 5.0       # class 1: 36 px, kept
    designed[:, 1, 15:17, 15:17] = 5.0   # class 1: 4 px, removed
    designed[:, 2, 12:14, 2:4] = 5.0     # class 2: a single component, kept
    monkeypatch.setattr(model, 'logits', lambda x: designed)
    mask = model.predict(torch.zeros(1, 1, 20, 20))[0].pred_mask
    assert mask.dtype == torch.int64
    assert int((mask == 1).sum()) == 36 and mask[15, 15] == 0 and int((mask == 2).sum()) == 4
    model.test_cfg['largest_component'] = False
    assert model.predict(torch.zeros(1, 1, 20, 20))[0].pred_mask[15, 15] == 1


@pytest.mark.parametrize('test_cfg,message', [
    (dict(mode='tile'), r"model.test_cfg.mode must be one of \['whole', 'slide'\], got 'tile'"),
    (dict(mode='slide'), r"mode='slide' needs model.test_cfg.window"),
    (dict(windw=64), r"model.test_cfg: unknown key 'windw'; valid keys are \['gaussian'"),
    (dict(window=0), r'model.test_cfg.window must be a positive int'),
    (dict(overlap=1.0), r'model.test_cfg.overlap must be a number in \[0, 1\)'),
    (dict(gaussian='yes'), r'model.test_cfg.gaussian must be True or False'),
    (dict(window_batch_size=0), r'model.test_cfg.window_batch_size must be a positive int'),
    (dict(tta=True), r'model.test_cfg.tta must be None or a dict'),
    (dict(tta=dict(flips=('d',))), r"model.test_cfg.tta.flips: unknown flip 'd'"),
    (dict(tta=dict(rot=True)), r"model.test_cfg.tta: unknown key 'rot'; valid keys are "
                               r"\['flips', 'rot90'\]"),
    (dict(largest_component=1), r'model.test_cfg.largest_component must be True, False or a list'),
    (dict(largest_component=[0]), r'list of foreground class indices'),
])
def test_bad_test_cfg_is_named(test_cfg, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(test_cfg=test_cfg)


# ---------------------------------------------------------------- command-line options


def seg_config(**model):
    return Config(dict(task='segmentation',
                       model=dict(type='effnet_backbones.SegmentationModel', **model),
                       train_dataloader=dict(dataset=dict(crop_size=96)),
                       test_evaluator=dict(type='effnet_backbones.SegMetric')))


def test_inference_options_set_the_models_test_cfg():
    cfg = seg_config()
    changed = apply_inference_options(cfg, tta=True, sliding_window=True, overlap=0.25,
                                      largest_component=True)
    assert dict(cfg.model.test_cfg) == dict(
        tta=dict(flips=('h', 'v'), rot90=False), mode='slide', window=96, overlap=0.25,
        largest_component=True)
    assert set(changed) == {'model.test_cfg.tta', 'model.test_cfg.mode', 'model.test_cfg.window',
                            'model.test_cfg.overlap', 'model.test_cfg.largest_component'}
    resolved = resolve_test_cfg(cfg.model.test_cfg)  # what the model is built with
    assert resolved['window'] == (96, 96) and resolved['tta'] == dict(flips=('h', 'v'), rot90=False)
    assert 'largest_component' not in cfg.test_evaluator


def test_inference_options_keep_what_the_config_says():
    cfg = seg_config(test_cfg=dict(window=(64, 80), overlap=0.75, tta=dict(rot90=True)))
    apply_inference_options(cfg, tta=True, sliding_window=True)
    assert cfg.model.test_cfg.window == (64, 80) and cfg.model.test_cfg.overlap == 0.75
    assert cfg.model.test_cfg.tta == dict(flips=('h', 'v'), rot90=True)  # rot90: config only
    plain = seg_config()
    assert apply_inference_options(plain) == {} and 'test_cfg' not in plain.model


def test_real_config_takes_the_crop_size_and_checks():
    from tasks.engine import check_config
    cfg = Config.fromfile(QUICK)
    apply_inference_options(cfg, sliding_window=True, tta=True)
    assert cfg.model.test_cfg.window == 128 and cfg.model.test_cfg.mode == 'slide'
    check_config(cfg)  # model.test_cfg is a key SegmentationModel accepts


def test_slide_mode_without_a_window_predicts_windows_of_the_training_crop():
    cfg = seg_config(test_cfg=dict(mode='slide', overlap=0.25))
    assert fill_slide_window(cfg) == 96 and cfg.model.test_cfg.window == 96
    assert resolve_test_cfg(cfg.model.test_cfg)['window'] == (96, 96)
    named = seg_config(test_cfg=dict(mode='slide', window=(64, 80)))
    assert fill_slide_window(named) is None and named.model.test_cfg.window == (64, 80)
    whole = seg_config(test_cfg=dict(mode='whole'))
    assert fill_slide_window(whole) is None and whole.model.test_cfg.get('window') is None
    assert fill_slide_window(seg_config()) is None and 'test_cfg' not in seg_config().model
    no_crop = seg_config(test_cfg=dict(mode='slide'))
    no_crop.train_dataloader.dataset.crop_size = None
    with pytest.raises(ValueError, match=r"model.test_cfg.mode='slide' needs a window size.*"
                                         r"model.test_cfg.window"):
        fill_slide_window(no_crop)


def test_training_configs_slide_at_the_crop_the_run_trains_on(monkeypatch):
    from tasks.engine import prepare_train_config
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cpu = prepare_train_config(QUICK, cfg_options={'model.test_cfg': dict(mode='slide')})
    assert cpu.model.test_cfg.window == cpu.train_dataloader.dataset.crop_size == 128
    larger = prepare_train_config(QUICK, cfg_options={
        'model.test_cfg': dict(mode='slide'), 'train_dataloader.dataset.crop_size': 160})
    assert larger.model.test_cfg.window == 160


def test_volume_metrics_take_the_largest_component_in_3d():
    cfg = seg_config()
    cfg.test_evaluator = dict(type='effnet_backbones.VolumeSegMetric', ignore_index=255)
    changed = apply_inference_options(cfg, largest_component=True)
    assert cfg.test_evaluator.largest_component is True
    assert 'test_cfg' not in cfg.model and changed == {'test_evaluator.largest_component': True}
    listed = seg_config()
    listed.test_evaluator = [dict(type='effnet_backbones.SegMetric'),
                             dict(type='VolumeSegMetric')]
    apply_inference_options(listed, largest_component=True, tta=True)
    assert listed.test_evaluator[1].largest_component is True
    assert 'largest_component' not in listed.model.test_cfg


def test_inference_option_errors():
    with pytest.raises(ValueError, match='--overlap 0.3 applies to sliding windows only'):
        apply_inference_options(seg_config(), overlap=0.3)
    no_crop = seg_config()
    no_crop.train_dataloader.dataset.crop_size = None
    with pytest.raises(ValueError, match='--sliding-window needs a window size.*test_cfg.window'):
        apply_inference_options(no_crop, sliding_window=True)
    detection = seg_config()
    detection.task = 'detection'
    with pytest.raises(ValueError, match="segmentation configs.*task='detection'"):
        apply_inference_options(detection, tta=True)


# ---------------------------------------------------------------- no silent overwrites


class FileInferencer(Inferencer):
    """An inferencer without a model: each 'prediction' is the input's name."""

    output_suffixes = ('_a.txt', '_b.txt')

    def __init__(self) -> None:  # no config, no checkpoint
        pass

    def load(self, path):
        return np.zeros((2, 2, 1), np.float32)

    def predict_image(self, image, path):
        return path.name

    def write(self, folder, name, image, prediction, path):
        paths = self.output_paths(folder, name, path)
        for output in paths:
            output.write_text(prediction)
        return paths


def test_existing_outputs_stop_the_run_before_anything_is_written(tmp_path):
    for name in ('x.png', 'y.png'):
        (tmp_path / name).write_bytes(b'')
    out = tmp_path / 'out'
    written = FileInferencer().run([str(tmp_path / '*.png')], out)
    assert sorted(p.name for p in written) == ['x_a.txt', 'x_b.txt', 'y_a.txt', 'y_b.txt']
    for path in written:
        path.unlink()
    (out / 'y_b.txt').write_text('kept')
    with pytest.raises(FileExistsError, match=r'y_b\.txt exists; nothing was written.*overwrite'):
        FileInferencer().run([str(tmp_path / '*.png')], out)
    assert sorted(p.name for p in out.iterdir()) == ['y_b.txt']  # x_* not written either
    FileInferencer().run([str(tmp_path / '*.png')], out, overwrite=True)
    assert (out / 'y_b.txt').read_text() == 'y.png'
    refuse_existing([out / 'y_b.txt'], overwrite=True)
    with pytest.raises(FileExistsError, match=r'and 1 more'):
        refuse_existing([out / 'x_a.txt', Path(out / 'missing'), out / 'y_a.txt'])
