"""One in-plane spacing for every slice: cases of other spacings are resampled for training and
their predictions resized back and scored on their own grid; cases at the target are untouched."""
import numpy as np
import pytest
import torch

from effnet_backbones.registry import MODELS
from tasks.common.volume_norm import build_volume_norm
from tasks.segmentation import SegSample, VolumeSliceDataset
from tasks.segmentation.volume_dataset import prepare_case
from tasks.segmentation.volume_spacing import (median_in_plane_spacing, resampled_size,
                                               resize_logits, resize_slices,
                                               resolve_target_spacing)
from tasks.segmentation.volumes import (LoadedCase, check_volume_folder, find_cases, load_case,
                                        read_volume_description)
from volume_data import write_volume_dataset

#: cases 0 and 2 at 0.8 mm in-plane, case 1 at half the pixel size, case 3 (validation) at 1.2
SPACINGS = [(0.8, 0.8, 3.0), (0.4, 0.4, 3.0), (0.8, 0.8, 3.0), (1.2, 1.2, 3.0)]


def test_the_median_is_taken_per_in_plane_axis_after_choosing_each_slicing_axis():
    # the third case is sliced along x (its coarsest axis): its in-plane axes are y and z
    spacings = [(0.5, 0.6, 3.0), (0.7, 0.9, 2.0), (4.0, 0.8, 1.0)]
    assert median_in_plane_spacing(spacings) == pytest.approx((0.7, 0.9))
    assert resolve_target_spacing('median', spacings) == pytest.approx((0.7, 0.9))
    assert resolve_target_spacing(None, spacings) is None
    assert resolve_target_spacing([0.5, 0.25], spacings) == (0.5, 0.25)
    for bad in ('mean', [0.5], [0.5, -1.0]):
        with pytest.raises(ValueError, match='target_spacing'):
            resolve_target_spacing(bad, spacings)


def test_sizes_keep_the_extent_and_near_spacings_are_left_alone():
    assert resampled_size((100, 60), (0.4, 0.5), (0.8, 0.8)) == (50, 38)
    assert resampled_size((100, 60), (0.8, 0.8), (0.8008, 0.7992)) == (100, 60)  # within 0.1 %
    assert resampled_size((100, 60), (0.8, 0.8), None) == (100, 60)


def test_resizing_keeps_label_values_and_a_constant_image_constant():
    labels = np.zeros((2, 40, 30), np.uint8)
    labels[:, 10:30, 5:20] = 2
    small = resize_slices(labels, (20, 15), labels=True)
    assert small.dtype == np.uint8 and set(np.unique(small)) == {0, 2}
    assert np.array_equal(small[:, 5:15, 3:10], np.full((2, 10, 7), 2, np.uint8))
    image = np.full((3, 40, 30, 2), 0.25, np.float32)
    assert np.allclose(resize_slices(image, (57, 11)), 0.25)
    assert resize_slices(image, (40, 30)) is image


def test_a_label_shrunk_and_its_one_hot_resized_back_lands_where_it_was():
    # the two resizes must agree on pixel centres, or predictions come back shifted (nearest
    # neighbour moves everything by half a pixel here: 0.44 px on these discs)
    rows, cols = np.mgrid[:96, :80]
    offsets, dices = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        label = np.zeros((1, 96, 80), np.uint8)
        for _ in range(8):
            r, c, radius = rng.uniform(10, 86), rng.uniform(10, 70), rng.uniform(4, 8)
            label[0][(rows - r) ** 2 + (cols - c) ** 2 <= radius ** 2] = 1
        coarse = resize_slices(label, (48, 40), labels=True)
        one_hot = torch.from_numpy(np.stack([coarse == 0, coarse == 1], 1).astype(np.float32))
        back = resize_logits(one_hot, (96, 80)).argmax(1).numpy()
        offsets.append(np.subtract(np.argwhere(back[0]).mean(0), np.argwhere(label[0]).mean(0)))
        dices.append((back & label).sum() * 2 / (back.sum() + label.sum()))
    assert np.all(np.abs(np.mean(offsets, 0)) < 0.25) and np.mean(dices) > 0.92


def _loaded(root, name):
    description = read_volume_description(root)
    return load_case(next(c for c in find_cases(description) if c.name == name), description)


def test_a_case_at_the_target_spacing_is_prepared_exactly_as_without_one(tmp_path):
    root = write_volume_dataset(tmp_path / 'data', cases=2)
    case = _loaded(root, 'case_000')
    norm = build_volume_norm(dict(mode='zscore'), ('T1',))
    plain, targeted = prepare_case(case, norm, 'coarsest'), prepare_case(case, norm, 'coarsest',
                                                                        (0.8, 0.8))
    assert not targeted.resampled and targeted.native_label is None
    assert np.array_equal(plain.image, targeted.image) and np.array_equal(plain.label,
                                                                          targeted.label)
    half = prepare_case(case, norm, 'coarsest', (1.6, 1.6))
    assert half.resampled and half.image.shape == (6, 20, 18, 1) and half.native_size == (40, 36)
    assert np.array_equal(half.native_label, plain.label)


def test_datasets_train_at_the_median_and_score_on_each_case_own_grid(tmp_path):
    root = write_volume_dataset(tmp_path / 'data', cases=4, case_spacings=SPACINGS)
    train = VolumeSliceDataset(str(root), split='train', normalize=dict(mode='zscore'),
                               target_spacing='median')
    assert train.target_spacing == pytest.approx((0.8, 0.8))  # median of 0.8, 0.4, 0.8
    assert train.metainfo['target_spacing'] == pytest.approx((0.8, 0.8))
    sizes = {case.name: case.image.shape[1:3] for case in train.cases}
    assert sizes == {'case_000': (40, 36), 'case_001': (20, 18), 'case_002': (40, 36)}
    item = train[next(i for i, (c, _) in enumerate(train.index) if train.cases[c].resampled)]
    assert item['inputs'].shape[-2:] == item['data_samples'].gt_mask.shape == (20, 18)
    assert item['data_samples'].ori_shape is None  # training learns at the target spacing
    val = VolumeSliceDataset(str(root), split='val', normalize=dict(mode='zscore'),
                             target_spacing=(0.8, 0.8))
    sample = val[0]['data_samples']
    assert val[0]['inputs'].shape[-2:] == (60, 54)  # 1.2 mm pixels at 0.8 mm
    assert sample.ori_shape == (40, 36) and sample.gt_mask.shape == (40, 36)
    assert VolumeSliceDataset(str(root), split='val', normalize=dict(mode='zscore')
                              ).cases[0].image.shape[1:3] == (40, 36)  # None: as stored


def test_predictions_of_resampled_slices_come_back_at_their_own_size():
    model = MODELS.build(dict(type='effnet_backbones.SegmentationModel', arch='b0', in_channels=1,
                              num_classes=3,
                              decoder_options=dict(decoder_channels=(16, 16, 16, 16, 16))))
    model.eval()
    samples = [SegSample('a', (60, 54), ori_shape=(40, 36)), SegSample('b', (50, 54))]
    batch = model.data_preprocessor(dict(inputs=[torch.randn(1, 60, 54), torch.randn(1, 50, 54)],
                                         data_samples=samples))
    with torch.no_grad():
        predicted = model(**batch, mode='predict')
        logits = model.predict_logits(batch['inputs'])
    assert [tuple(s.pred_mask.shape) for s in predicted] == [(40, 36), (50, 54)]
    expected = resize_logits(logits[:1, :, :60, :54], (40, 36)).argmax(1)[0]
    assert torch.equal(predicted[0].pred_mask, expected)
    assert torch.equal(predicted[1].pred_mask, logits[1, :, :50, :54].argmax(0))


def test_a_loaded_case_spacing_comes_from_its_file(tmp_path):
    root = write_volume_dataset(tmp_path / 'data', cases=4, case_spacings=SPACINGS)
    case = _loaded(root, 'case_001')
    assert isinstance(case, LoadedCase) and case.spacing == pytest.approx((0.4, 0.4, 3.0))


def test_check_data_reports_the_median_training_takes_and_the_cases_that_differ(tmp_path):
    # over all four cases the median would be 1.0; fold 0 trains on the first three: 0.8
    spacings = SPACINGS[:3] + [(2.0, 2.0, 3.0)]
    root = write_volume_dataset(tmp_path / 'data', cases=4, case_spacings=spacings)
    summary, problems = check_volume_folder(root)
    assert problems == []
    assert "in-plane spacing: median (0.8, 0.8) (of fold 0's training cases); 2 of 4 case(s) " \
           'differ by more than 0.1 %: case_001, case_003' in summary


def test_scoring_resampled_cases_on_their_own_grid_needs_whole_slices(tmp_path):
    root = write_volume_dataset(tmp_path / 'data', cases=4, case_spacings=SPACINGS)
    with pytest.raises(ValueError, match=r"case 'case_003' is resampled .* remove crop_size"):
        VolumeSliceDataset(str(root), split='val', normalize=dict(mode='zscore'),
                           target_spacing=(0.8, 0.8), crop_size=16)
    cropped = VolumeSliceDataset(str(root), split='val', normalize=dict(mode='zscore'),
                                 target_spacing=(0.8, 0.8), crop_size=16, score_native=False)
    assert cropped[0]['data_samples'].ori_shape is None
    assert all(case.native_label is None for case in cropped.cases)


def test_a_config_spacing_unlike_the_checkpoint_is_told_apart():
    from tasks.segmentation.volume_config import _spacing_differs
    assert not _spacing_differs('median', [0.8, 0.8])  # the median is what training resolved
    assert not _spacing_differs((0.8, 0.8), [0.8, 0.8]) and not _spacing_differs(None, None)
    assert _spacing_differs((0.5, 0.5), [0.8, 0.8]) and _spacing_differs(None, [0.8, 0.8])
    assert _spacing_differs((0.8, 0.8), None)
