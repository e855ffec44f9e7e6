"""The medical-volume workflow end to end on synthetic NIfTI (and NRRD, MetaImage) cases with an
oblique, anisotropic affine: check, train a few iterations from the nnU-Net layout, test per case
(with and without the inference tricks), infer masks aligned with their inputs, never overwriting
unasked."""
import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tasks.engine import prepare_train_config
from tasks.engine.runner import prepare_test_config
from tasks.common.io import DataError
from tasks.common.volume_io import read_volume, write_volume_like
from tasks.segmentation.volume_inference import VolumeInferencer, channel_files, volume_inputs
from tasks.segmentation.volumes import check_volume_folder
from tool_loader import CONFIGS, cfg_options, run_train_tool, tool
from volume_data import write_volume_dataset

VOLUMES = CONFIGS / 'unet_effb4_volumes.py'
TINY = {'model.arch': 'b0', 'model.decoder_options.decoder_channels': [16, 16, 16, 16, 16],
        'train_dataloader.batch_size': 2, 'train_dataloader.dataset.crop_size': 32,
        'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False,
        'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('volumes')
    data = write_volume_dataset(root / 'data', cases=4)
    work = root / 'work'
    runner = run_train_tool(VOLUMES, data, work, 2, *cfg_options(TINY, 'volumes_tools'))
    return data, work, runner


def test_a_few_iterations_train_from_the_volume_layout(trained):
    data, work, runner = trained
    assert runner.iter == 2
    assert (work / 'iter_2.pth').is_file()
    dataset = runner.train_dataloader.dataset
    assert dataset.case_names == ['case_000', 'case_001', 'case_002']
    assert dataset.metainfo['normalize'] == [{'mode': 'zscore'}]
    assert runner.model.num_classes == 2


def test_test_tool_scores_every_case_in_3d(trained, tmp_path, capsys):
    data, work, _ = trained
    out = tmp_path / 'metrics.json'
    metrics = tool('test').main([str(VOLUMES), str(work / 'iter_2.pth'), '--data-root', str(data),
                                 '--work-dir', str(tmp_path / 'test'), '--out', str(out),
                                 *cfg_options(TINY, 'volumes_test')])
    printed = capsys.readouterr().out
    assert 'per-case Dice (3-D):' in printed and 'case_003' in printed
    assert 'case/case_003/Dice.lesion' in metrics and 0 <= metrics['mFgDice'] <= 1
    assert json.loads(out.read_text())['mFgDice'] == pytest.approx(metrics['mFgDice'])
    tricks = tool('test').main([str(VOLUMES), str(work / 'iter_2.pth'), '--data-root', str(data),
                                '--work-dir', str(tmp_path / 'test2'), '--tta', '--sliding-window',
                                '--largest-component', *cfg_options(TINY, 'volumes_test2')])
    assert 0 <= tricks['mFgDice'] <= 1


def test_infer_writes_masks_on_the_input_grid_and_never_overwrites_unasked(trained, tmp_path):
    data, work, _ = trained
    case = data / 'imagesTr' / 'case_003_0000.nii.gz'
    arguments = [str(VOLUMES), str(work / 'iter_2.pth'), str(case), '--out-dir', str(tmp_path),
                 '--cfg-options', 'model.arch=b0', 'model.decoder_options.decoder_channels='
                 '[16,16,16,16,16]']
    written = tool('infer').main(arguments)
    mask_path = tmp_path / 'case_003.nii.gz'
    assert mask_path in written and any(p.suffix == '.png' for p in written)
    image, mask = nib.load(str(case)), nib.load(str(mask_path))
    assert mask.shape == image.shape == (40, 36, 6)
    assert np.allclose(mask.affine, image.affine) and not np.allclose(image.affine[:3, :3],
                                                                      np.diag(np.diag(image.affine)[:3]))
    assert np.allclose(mask.header.get_zooms(), (0.8, 0.8, 3.0))
    assert mask.get_data_dtype() == np.uint8
    assert set(np.unique(np.asanyarray(mask.dataobj)).tolist()) <= {0, 1}
    before = mask_path.read_bytes()
    with pytest.raises(FileExistsError, match='--overwrite'):
        tool('infer').main(arguments)
    assert mask_path.read_bytes() == before
    tool('infer').main(arguments + ['--overwrite'])


def test_the_folder_recipe_switches_to_volumes_by_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    data = write_volume_dataset(tmp_path / 'data', cases=3)
    cfg = prepare_train_config(str(CONFIGS / 'unet_effb4_medical.py'), data_root=str(data),
                               max_iters=2, cfg_options={'experiment_name': 'volumes_switch'})
    assert cfg.train_dataloader.dataset.type == 'effnet_backbones.VolumeSliceDataset'
    # the recipe's share of foreground-centred crops reaches the volume dataset: the CPU
    # profile's 0.66 here, the folder dataset's 0.33 on a GPU, a user's own value always
    assert cfg.train_dataloader.dataset.foreground_ratio == pytest.approx(0.66)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    own = {'train_dataloader.dataset.foreground_ratio': 0.5}
    for options, expected in (({}, 0.33), (own, 0.5)):
        gpu = prepare_train_config(str(CONFIGS / 'unet_effb4_medical.py'), data_root=str(data),
                                   max_iters=2, cfg_options=options)
        assert gpu.train_dataloader.dataset.type == 'effnet_backbones.VolumeSliceDataset'
        assert gpu.train_dataloader.dataset.foreground_ratio == pytest.approx(expected)
    assert cfg.val_evaluator.type == 'effnet_backbones.VolumeSegMetric'
    assert cfg.model.num_classes == 2 and cfg.model.in_channels == 1


def test_multichannel_cases_gather_their_channel_files(tmp_path):
    data = write_volume_dataset(tmp_path / 'data', cases=2, channel_names=('T1', 'T2'))
    first = data / 'imagesTr' / 'case_000_0000.nii.gz'
    assert [p.name for p in channel_files(first, 2)] == ['case_000_0000.nii.gz',
                                                         'case_000_0001.nii.gz']
    (data / 'imagesTr' / 'case_000_0001.nii.gz').unlink()
    with pytest.raises(Exception, match="case 'case_000'.*case_000_0001.nii.gz is missing"):
        channel_files(first, 2)


def test_check_data_lists_volume_problems(tmp_path, capsys):
    data = write_volume_dataset(tmp_path / 'data', cases=3)
    assert tool('check_data').main([str(data)]) == 0
    (data / 'labelsTr' / 'case_001.nii.gz').write_bytes(b'broken')
    assert tool('check_data').main([str(data)]) == 1
    assert "case 'case_001'" in capsys.readouterr().out


@pytest.mark.parametrize('file_ending', ['.nrrd', '.mha'])
def test_itk_formats_train_and_infer_from_a_folder_in_their_own_format(tmp_path, file_ending):
    # nnU-Net v2's file_ending picks the format; outputs keep the input's format and geometry
    data = write_volume_dataset(tmp_path / 'data', cases=3, file_ending=file_ending)
    work = tmp_path / 'work'
    runner = run_train_tool(VOLUMES, data, work, 1, *cfg_options(TINY, f'volumes{file_ending}'))
    assert runner.train_dataloader.dataset.case_names == ['case_000', 'case_001']
    out = tmp_path / 'predictions'
    written = tool('infer').main([str(VOLUMES), str(work / 'iter_1.pth'), str(data / 'imagesTr'),
                                  '--out-dir', str(out), '--cfg-options', 'model.arch=b0',
                                  'model.decoder_options.decoder_channels=[16,16,16,16,16]'])
    masks = sorted(path.name for path in written if path.name.endswith(file_ending))
    assert masks == [f'case_00{i}{file_ending}' for i in range(3)]
    scan = sitk.ReadImage(str(data / 'imagesTr' / f'case_002_0000{file_ending}'))
    mask = sitk.ReadImage(str(out / f'case_002{file_ending}'))
    assert mask.GetSize() == scan.GetSize() == (40, 36, 6)
    assert mask.GetOrigin() == pytest.approx(scan.GetOrigin())
    assert mask.GetSpacing() == pytest.approx(scan.GetSpacing())
    assert mask.GetDirection() == pytest.approx(scan.GetDirection())
    assert mask.GetPixelID() == sitk.sitkUInt8


def test_infer_never_writes_over_an_input_scan(trained, tmp_path):
    # a scan named like its case (3D Slicer's scan.nrrd), predicted into its own folder
    data, work, _ = trained
    scan = tmp_path / 'scan.nii.gz'
    scan.write_bytes((data / 'imagesTr' / 'case_003_0000.nii.gz').read_bytes())
    before = scan.read_bytes()
    with pytest.raises(DataError, match=r'would replace the input scan'):
        tool('infer').main([str(VOLUMES), str(work / 'iter_2.pth'), str(scan), '--out-dir',
                            str(tmp_path), '--overwrite', '--cfg-options', 'model.arch=b0',
                            'model.decoder_options.decoder_channels=[16,16,16,16,16]'])
    assert scan.read_bytes() == before and not list(tmp_path.glob('*overlay*'))


def test_folders_and_globs_of_volumes_name_each_case_once(tmp_path):
    data = write_volume_dataset(tmp_path / 'data', cases=2, channel_names=('T1', 'T2'))
    images = data / 'imagesTr'
    expected = [images / 'case_000_0000.nii.gz', images / 'case_001_0000.nii.gz']
    assert volume_inputs([str(images)]) == expected
    assert volume_inputs([str(images / '*.nii.gz')]) == expected
    assert volume_inputs([str(images / 'case_001_0001.nii.gz')]) == [
        images / 'case_001_0001.nii.gz']  # named alone, a channel file stays (and is checked)
    (images / '.case_000.123.partial.nii.gz').write_bytes(b'')  # an interrupted write
    (images / 'case_000.raw').write_bytes(b'')  # a detached header's data file
    assert volume_inputs([str(images / '*')]) == expected
    (images / 'notes.png').write_bytes(b'')
    with pytest.raises(DataError, match='mix volumes and 2-D images.*notes.png'):
        volume_inputs([str(images)])
    assert volume_inputs([str(images / 'notes.png')]) is None


def test_convert_volumes_copies_a_dataset_into_another_format_exactly(tmp_path, capsys):
    data = write_volume_dataset(tmp_path / 'data', cases=3, channel_names=('T1', 'T2'),
                                test_cases=1)
    (data / 'SOURCE.md').write_text('where it came from')
    target = tmp_path / 'as_nrrd'
    assert tool('convert_volumes').main([str(data), str(target), '--file-ending', '.nrrd']) == 0
    assert 'wrote 12 volumes (.nrrd)' in capsys.readouterr().out
    assert json.loads((target / 'dataset.json').read_text())['file_ending'] == '.nrrd'
    assert (target / 'SOURCE.md').read_text() == 'where it came from'
    assert (target / 'splits_final.json').read_bytes() == (data / 'splits_final.json').read_bytes()
    for name in ('imagesTr/case_001_0001', 'labelsTr/case_001', 'imagesTs/test_000_0000'):
        original = nib.load(str(data / f'{name}.nii.gz'))
        copy = read_volume(target / f'{name}.nrrd')
        assert np.array_equal(copy.array, np.asanyarray(original.dataobj))
        assert copy.array.dtype == original.get_data_dtype()
        assert np.allclose(copy.affine, original.affine, atol=1e-6)
    # and back: the round trip is the original, and the copy trains as a dataset of its own
    back = tmp_path / 'back'
    assert tool('convert_volumes').main([str(target), str(back), '--file-ending', '.nii.gz']) == 0
    assert check_volume_folder(back)[1] == [] and check_volume_folder(target)[1] == []
    again = nib.load(str(back / 'labelsTr/case_002.nii.gz'))
    assert np.array_equal(np.asanyarray(again.dataobj),
                          np.asanyarray(nib.load(str(data / 'labelsTr/case_002.nii.gz')).dataobj))
    # a target in use is refused before anything is written; so is a two-file format
    assert tool('convert_volumes').main([str(data), str(target), '--file-ending', '.mha']) == 1
    assert 'not an empty folder' in capsys.readouterr().out
    assert tool('convert_volumes').main([str(data), str(tmp_path / 'x'), '--file-ending',
                                         '.nhdr']) == 1
    assert "'.nhdr' cannot be written" in capsys.readouterr().out
    assert tool('convert_volumes').main([str(data), str(data / 'inner'), '--file-ending',
                                         '.mha']) == 1
    assert 'lies inside' in capsys.readouterr().out and not (data / 'inner').exists()
    assert not (tmp_path / 'x').exists() and not list(tmp_path.glob('.*partial'))


def test_an_interrupted_conversion_leaves_no_target(tmp_path, monkeypatch):
    import tasks.segmentation.volumes as volumes

    data = write_volume_dataset(tmp_path / 'data', cases=2)
    calls = []

    def failing(array, reference, path, dtype):
        calls.append(path)
        if len(calls) == 3:
            raise OSError('disk full')
        return write_volume_like(array, reference, path, dtype)
    monkeypatch.setattr(volumes, 'write_volume_like', failing)
    with pytest.raises(OSError, match='disk full'):
        volumes.convert_volume_folder(data, tmp_path / 'copy', '.mha')
    assert not (tmp_path / 'copy').exists() and not list(tmp_path.glob('.*partial'))


def test_cases_of_other_spacings_train_resampled_and_come_back_on_their_own_grid(tmp_path):
    # training cases at 0.8, 0.4 and 0.8 mm in-plane, the validation case at 1.2 mm
    spacings = [(0.8, 0.8, 3.0), (0.4, 0.4, 3.0), (0.8, 0.8, 3.0), (1.2, 1.2, 3.0)]
    data = write_volume_dataset(tmp_path / 'data', cases=4, case_spacings=spacings)
    work = tmp_path / 'work'
    runner = run_train_tool(VOLUMES, data, work, 1, *cfg_options(TINY, 'volumes_spacing'))
    assert runner.train_dataloader.dataset.target_spacing == pytest.approx((0.8, 0.8))
    assert runner.val_dataloader.dataset.target_spacing == pytest.approx((0.8, 0.8))
    meta = torch.load(work / 'iter_1.pth', map_location='cpu',
                      weights_only=False)['meta']['dataset_meta']
    assert meta['target_spacing'] == pytest.approx((0.8, 0.8))
    metrics = tool('test').main([str(VOLUMES), str(work / 'iter_1.pth'), '--data-root', str(data),
                                 '--work-dir', str(tmp_path / 'test'),
                                 *cfg_options(TINY, 'volumes_spacing_test')])
    assert 0 <= metrics['mFgDice'] <= 1  # scored against the 40 x 36 x 6 label as stored
    case = data / 'imagesTr' / 'case_003_0000.nii.gz'
    written = tool('infer').main([str(VOLUMES), str(work / 'iter_1.pth'), str(case),
                                  '--out-dir', str(tmp_path / 'out'), '--cfg-options',
                                  'model.arch=b0',
                                  'model.decoder_options.decoder_channels=[16,16,16,16,16]'])
    mask = nib.load(str(tmp_path / 'out' / 'case_003.nii.gz'))
    assert mask.shape == (40, 36, 6) and np.allclose(mask.affine, nib.load(str(case)).affine)
    assert len(written) == 4
    # test and infer take the spacing the checkpoint trained at, not the data's median again;
    # a checkpoint from before resampling (no entry) predicts slices as stored
    checkpoint = torch.load(work / 'iter_1.pth', map_location='cpu', weights_only=False)
    options = {**TINY, 'test_dataloader.dataset.target_spacing': (0.5, 0.5)}
    for name, spacing in (('coarse.pth', [1.6, 1.6]), ('old.pth', None)):
        if spacing is None:
            del checkpoint['meta']['dataset_meta']['target_spacing']
        else:
            checkpoint['meta']['dataset_meta']['target_spacing'] = spacing
        torch.save(checkpoint, tmp_path / name)
        cfg = prepare_test_config(str(VOLUMES), str(tmp_path / name), str(tmp_path / 'cfg'),
                                  data_root=str(data), cfg_options=options)
        assert cfg.test_dataloader.dataset.target_spacing == spacing
        inferencer = VolumeInferencer(cfg, str(tmp_path / name))
        prediction = inferencer.predict(case)
        assert inferencer.target_spacing == spacing and prediction.labels.shape == (40, 36, 6)
        assert prediction.stack.image.shape[1:3] == ((30, 27) if spacing else (40, 36))
