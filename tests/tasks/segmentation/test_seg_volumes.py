"""NIfTI volumes: the nnU-Net / Decathlon layouts, splits, per-volume normalisation, slices along
the coarsest axis, foreground oversampling, per-case 3-D metrics, and every bad input stopped with
an error naming the case and the mismatch."""
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from tasks.common.io import DataError
from tasks.common.volume_io import read_volume, slice_axis, write_volume_like
from tasks.common.volume_norm import ZSCORE_CLIP, build_volume_norm, measure_ct_statistics
from tasks.segmentation import SegSample, VolumeSegMetric, VolumeSliceDataset
from tasks.segmentation.volume_config import resolve_volume_normalization
from tasks.segmentation.volumes import (check_volume_folder, find_cases, load_case,
                                        read_volume_description, split_cases)
from volume_data import oblique_affine, synthetic_case, write_volume_dataset


@pytest.fixture
def volumes(tmp_path):
    return write_volume_dataset(tmp_path / 'data', cases=4)


def test_cases_pair_up_and_folds_are_nnunet_like(tmp_path, volumes):
    description = read_volume_description(volumes)
    assert description.classes == ('background', 'lesion') and description.channel_names == ('T1',)
    cases = find_cases(description)
    assert [case.name for case in cases] == [f'case_{i:03d}' for i in range(4)]
    assert split_cases(cases, 'val', volumes)[0].name == 'case_003'  # splits_final.json
    (volumes / 'splits_final.json').unlink()
    folds = [[case.name for case in split_cases(cases, 'val', volumes, fold, 4)] for fold in range(4)]
    assert sorted(sum(folds, [])) == [case.name for case in cases]  # every case validated once
    train = [case.name for case in split_cases(cases, 'train', volumes, 1, 4)]
    assert set(train).isdisjoint(folds[1]) and len(train) == 3
    assert folds == [[c.name for c in split_cases(cases, 'val', volumes, f, 4)] for f in range(4)]


def test_decathlon_layout_reads_4d_multimodal_images(tmp_path):
    root = tmp_path / 'Task01'
    affine = oblique_affine((1.0, 1.0, 2.5))
    for index in range(2):
        image, label = synthetic_case((20, 18, 5), seed=index, channels=2)
        for folder, array in (('imagesTr', image), ('labelsTr', label)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, affine), str(root / folder / f'la_{index:03d}.nii.gz'))
    (root / 'dataset.json').write_text(json.dumps(dict(
        modality={'0': 'FLAIR', '1': 'T1w'}, labels={'0': 'background', '1': 'tumour'})))
    data = VolumeSliceDataset(str(root), split='all')
    assert data.in_channels == 2 and data.classes == ('background', 'tumour')
    item = data[0]
    assert item['inputs'].shape == (2, 20, 18) and item['data_samples'].case == 'la_000'


def test_slices_follow_the_coarsest_axis(tmp_path):
    assert slice_axis((0.8, 0.8, 3.0)) == 2 and slice_axis((3.0, 1.0, 1.0)) == 0
    assert slice_axis((1.0, 1.0, 1.0)) == 2 and slice_axis((1, 1, 1), 1) == 1
    with pytest.raises(ValueError, match='slice_axis'):
        slice_axis((1, 1, 1), 'finest')
    root = write_volume_dataset(tmp_path / 'x', cases=2, shape=(6, 30, 24), spacing=(4.0, 1, 1),
                                splits=False)
    data = VolumeSliceDataset(str(root), split='all')
    assert len(data) == 12 and data[0]['inputs'].shape == (1, 30, 24)
    along_y = VolumeSliceDataset(str(root), split='all', slice_axis=1)
    assert len(along_y) == 60 and along_y[0]['inputs'].shape == (1, 6, 24)


def test_validation_items_are_every_slice_in_order(volumes):
    data = VolumeSliceDataset(str(volumes), split='val')
    samples = [data[i]['data_samples'] for i in range(len(data))]
    assert [(s.case, s.slice_index) for s in samples] == [('case_003', z) for z in range(6)]
    assert samples[0].gt_mask.shape == (40, 36)
    label = np.asanyarray(nib.load(str(volumes / 'labelsTr/case_003.nii.gz')).dataobj)
    assert torch.equal(samples[3].gt_mask, torch.from_numpy(label[:, :, 3].astype(np.int64)))


def test_foreground_oversampling_crops_around_foreground(volumes):
    plain = VolumeSliceDataset(str(volumes), crop_size=12, foreground_ratio=0.0)
    forced = VolumeSliceDataset(str(volumes), crop_size=12, foreground_ratio=1.0)
    np.random.seed(0)
    share = [bool((forced[i % len(forced)]['data_samples'].gt_mask == 1).any()) for i in range(40)]
    plain_share = [bool((plain[i % len(plain)]['data_samples'].gt_mask == 1).any())
                   for i in range(40)]
    assert all(share) and sum(plain_share) < 40  # random 12 px crops miss the lesion sometimes
    with pytest.raises(ValueError, match='foreground_ratio'):
        VolumeSliceDataset(str(volumes), foreground_ratio=1.5)


def test_zscore_is_carried_through_unit_values_exactly():
    norm = build_volume_norm(None, ['T2'])
    volume = np.random.default_rng(0).normal(700.0, 90.0, (1, 10, 12, 4)).astype(np.float32)
    unit = norm.to_unit(volume)
    assert unit.min() >= 0 and unit.max() <= 1
    z = norm.standardize(np.moveaxis(unit, 0, -1))[..., 0]
    expected = np.clip((volume[0] - volume.mean()) / volume.std(), -ZSCORE_CLIP, ZSCORE_CLIP)
    np.testing.assert_allclose(z, expected, rtol=1e-4, atol=1e-4)
    nonzero = build_volume_norm(dict(mode='zscore', nonzero=True), ['T1'])
    masked = volume.copy()
    masked[0, :5] = 0
    z = nonzero.standardize(np.moveaxis(nonzero.to_unit(masked), 0, -1))[..., 0]
    inside = masked[0][masked[0] != 0]
    np.testing.assert_allclose(z[5:].mean(), 0, atol=1e-3)
    assert inside.size and z[:5].max() < z[5:].min()


def test_ct_channels_get_training_foreground_statistics(tmp_path):
    root = write_volume_dataset(tmp_path / 'ct', cases=3, channel_names=('CT',), splits=False)
    assert build_volume_norm(dict(mode='auto'), ['CT', 'T1']).to_config() == [
        dict(mode='ct'), dict(mode='zscore')]
    with pytest.raises(ValueError, match='training set'):
        VolumeSliceDataset(str(root), split='all')
    train = dict(data_root=str(root), split='all', normalize=dict(mode='auto'))
    config = resolve_volume_normalization(train, ('CT',))
    cases = [case for case in VolumeSliceDataset(str(root), split='all',
                                                 normalize=config).cases]
    images = [np.asanyarray(nib.load(str(p)).dataobj)
              for p in sorted((root / 'imagesTr').glob('*.nii.gz'))]
    labels = [np.asanyarray(nib.load(str(p)).dataobj)
              for p in sorted((root / 'labelsTr').glob('*.nii.gz'))]
    expected = measure_ct_statistics(images, labels)
    assert config[0] == dict(mode='ct', **expected)
    fg = np.concatenate([image[label > 0] for image, label in zip(images, labels)])
    assert expected['low'] == pytest.approx(np.percentile(fg, 0.5), rel=1e-6)
    assert expected['mean'] == pytest.approx(np.clip(fg, expected['low'], expected['high']).mean(),
                                             rel=1e-6)
    assert len(cases) == 3
    saved = resolve_volume_normalization(train, ('CT',), saved=[dict(mode='ct', low=-1, high=1,
                                                                     mean=0, std=1)])
    assert saved[0]['low'] == -1  # a checkpoint's statistics win over measuring again


def _volume_samples(case, pred, gt):
    return [SegSample(img_path=f'{case}#{z}', img_shape=pred.shape[1:],
                      gt_mask=torch.from_numpy(gt[z].astype(np.int64)),
                      pred_mask=torch.from_numpy(pred[z].astype(np.int64)), case=case,
                      slice_index=z) for z in range(len(pred))]


def test_volume_metric_is_per_case_3d_dice_with_optional_largest_component():
    rng = np.random.default_rng(0)
    gt_a = np.zeros((6, 20, 20), np.uint8)
    gt_a[1:5, 4:12, 4:12] = 1
    pred_a = gt_a.copy()
    pred_a[2, 16:19, 16:19] = 1  # a spurious blob: one extra component
    gt_b = (rng.random((4, 20, 20)) > 0.7).astype(np.uint8)
    pred_b = np.roll(gt_b, 1, axis=2)
    metric = VolumeSegMetric(per_case=True)
    metric.dataset_meta = dict(classes=('background', 'lesion'))
    samples = _volume_samples('a', pred_a, gt_a) + _volume_samples('b', pred_b, gt_b)
    order = rng.permutation(len(samples))  # slices may arrive in any order (DDP)
    metric.process({}, [samples[i] for i in order])
    result = metric.evaluate(len(samples))

    def dice(pred, gt):
        return 2 * np.sum((pred == 1) & (gt == 1)) / (np.sum(pred == 1) + np.sum(gt == 1))
    assert result['case/a/Dice.lesion'] == pytest.approx(dice(pred_a, gt_a))
    assert result['case/b/Dice.lesion'] == pytest.approx(dice(pred_b, gt_b))
    assert result['Dice.lesion'] == pytest.approx((dice(pred_a, gt_a) + dice(pred_b, gt_b)) / 2)
    assert result['mFgDice'] == result['Dice.lesion']
    for option in (True, [1]):
        cleaned = VolumeSegMetric(largest_component=option, per_case=True)
        cleaned.dataset_meta = metric.dataset_meta
        cleaned.process({}, _volume_samples('a', pred_a, gt_a))
        assert cleaned.evaluate(6)['case/a/Dice.lesion'] == pytest.approx(1.0)
    with pytest.raises(ValueError, match='foreground class indices'):
        VolumeSegMetric(largest_component=[0])
    incomplete = VolumeSegMetric()
    incomplete.dataset_meta = metric.dataset_meta
    incomplete.process({}, _volume_samples('a', pred_a, gt_a)[1:])
    with pytest.raises(ValueError, match='every slice'):
        incomplete.evaluate(5)


def test_written_volumes_keep_shape_affine_and_header(tmp_path, volumes):
    image = read_volume(volumes / 'imagesTr/case_000_0000.nii.gz')
    labels = (image.array > 600).astype(np.uint8)
    out = write_volume_like(labels, image, tmp_path / 'out/case_000.nii.gz')
    written = nib.load(str(out))
    assert written.shape == image.shape and np.allclose(written.affine, image.affine)
    assert written.get_data_dtype() == np.uint8
    assert np.allclose(written.header.get_zooms(), image.header.get_zooms())
    assert np.array_equal(np.asanyarray(written.dataobj), labels)
    assert not list((tmp_path / 'out').glob('.*partial*'))
    with pytest.raises(ValueError, match='shape'):
        write_volume_like(labels[:-1], image, tmp_path / 'out/bad.nii.gz')


def _relabel(root, case, array, affine=None):
    path = root / 'labelsTr' / f'{case}.nii.gz'
    original = nib.load(str(path))
    nib.save(nib.Nifti1Image(array, original.affine if affine is None else affine), str(path))


def _labelled_at(shape, voxel):
    array = np.zeros(shape, np.uint8)
    array[voxel] = 1
    return array


def _shifted_affine(root):
    affine = nib.load(str(root / 'labelsTr/case_001.nii.gz')).affine.copy()
    affine[0, 3] += 2.0
    return affine


BAD_INPUTS = {
    # name: (how to break a good dataset, phrases the message must hold)
    'label shape': (lambda r: _relabel(r, 'case_001', _labelled_at((40, 36, 7), (3, 3, 6))),
                    ["case 'case_001'", 'shape (40, 36, 7)', '(40, 36, 6)',
                     "1 labelled voxel(s) lie outside the image's grid"]),
    'label affine': (lambda r: _relabel(r, 'case_001', np.zeros((40, 36, 6), np.uint8),
                                        _shifted_affine(r)),
                     ["case 'case_001'", 'affine', 'same shape and affine']),
    '4-D label': (lambda r: _relabel(r, 'case_001', np.zeros((40, 36, 6, 2), np.uint8)),
                  ["case 'case_001'", '(40, 36, 6, 2)', '3-D']),
    'label value': (lambda r: _relabel(r, 'case_001', np.full((40, 36, 6), 3, np.uint8)),
                    ["case 'case_001'", 'value(s) 3', '2 classes']),
    'missing modality': (lambda r: (r / 'dataset.json').write_text(json.dumps(dict(
        channel_names={'0': 'T1', '1': 'T2'}, labels={'background': 0, 'lesion': 1},
        file_ending='.nii.gz'))), ["case 'case_000'", 'missing channel', '0001 (T2)']),
    'extra channel': (lambda r: (r / 'imagesTr/case_002_0000.nii.gz').rename(
        r / 'imagesTr/case_002_0001.nii.gz'), ["case 'case_002'", 'missing channel', '0000 (T1)']),
    'file ending': (lambda r: (r / 'dataset.json').write_text(json.dumps(dict(
        channel_names={'0': 'T1'}, labels={'background': 0, 'lesion': 1}, file_ending='.nii'))),
                    ['file_ending', "'.nii'"]),
    'truncated': (lambda r: (r / 'imagesTr/case_002_0000.nii.gz').write_bytes(
        (r / 'imagesTr/case_002_0000.nii.gz').read_bytes()[:400]),
                  ["case 'case_002'", 'case_002_0000.nii.gz', 'cannot be read']),
    'not nifti': (lambda r: (r / 'labelsTr/case_000.nii.gz').write_bytes(b'not a volume'),
                  ["case 'case_000'", 'case_000.nii.gz', 'cannot be read']),
    'label missing': (lambda r: (r / 'labelsTr/case_002.nii.gz').unlink(),
                      ['case_002', 'no label']),
    'no dataset.json': (lambda r: (r / 'dataset.json').unlink(), ['dataset.json not found']),
}


def test_a_label_cropped_to_part_of_its_image_grid_is_placed_on_it(tmp_path):
    # 3D Slicer exports a segmentation cropped to its extent: the same voxel axes, another origin
    root = write_volume_dataset(tmp_path / 'data', cases=4, splits=False)
    path = root / 'labelsTr/case_001.nii.gz'
    full = nib.load(str(path))
    label = np.asanyarray(full.dataobj)
    crop = label[5:30, 4:33, 1:5]
    affine = full.affine.copy()
    affine[:3, 3] = (full.affine @ [5, 4, 1, 1])[:3]
    nib.save(nib.Nifti1Image(crop, affine), str(path))
    description = read_volume_description(root)
    case = [c for c in find_cases(description) if c.name == 'case_001'][0]
    loaded = load_case(case, description)
    expected = np.zeros_like(label)
    expected[5:30, 4:33, 1:5] = crop
    assert loaded.label_placed and np.array_equal(loaded.label, expected)
    assert crop.sum() == label.sum() > 0 and crop.shape != label.shape  # the extent, all of it
    summary, problems = check_volume_folder(root)
    assert problems == [] and '1 case(s) in labelsTr (case_001) cover part' in summary
    # half a voxel off is no crop: refused, naming the shift
    affine[0, 3] += 0.4
    nib.save(nib.Nifti1Image(crop, affine), str(path))
    with pytest.raises(DataError, match=r"case 'case_001'.*not a whole number"):
        load_case(case, description)


@pytest.mark.parametrize('name', sorted(BAD_INPUTS))
def test_bad_volume_data_stops_before_training_naming_the_case(tmp_path, name):
    root = write_volume_dataset(tmp_path / 'data', cases=4, splits=False)
    damage, phrases = BAD_INPUTS[name]
    damage(root)
    with pytest.raises(DataError) as caught:
        VolumeSliceDataset(str(root), split='all')
    for phrase in phrases:
        assert phrase in str(caught.value), (phrase, str(caught.value))
    summary, problems = check_volume_folder(root)
    assert problems and any(phrases[0] in problem for problem in problems), problems


def test_check_volume_folder_summarises_a_clean_set(volumes):
    summary, problems = check_volume_folder(volumes)
    assert not problems
    assert 'imagesTr: 4 case(s)' in summary and 'spacing (0.8, 0.8, 3.0)' in summary
    assert 'fold 0 (splits_final.json): 3 train / 1 val cases' in summary
    assert 'lesion' in summary and 'slicing axis (coarsest) [2]' in summary
