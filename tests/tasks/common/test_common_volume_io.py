"""Volume files of every supported format read to one convention, (X, Y, Z) arrays with a RAS+
affine, checked against NRRD headers written by hand and against nibabel; written back in the
input's format with its geometry, atomically; bad files named in the error."""
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from tasks.common.io import DataError
from tasks.common.volume_io import (ItkGeometry, is_volume_file, output_suffix, read_spacing,
                                    read_volume, volume_stem, volume_suffix, write_volume,
                                    write_volume_like)
from volume_data import oblique_affine

VOXELS = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2) * 7 - 40  # (X, Y, Z)
#: the hand-written header's LPS axes (x: towards -y, y: towards +x) and origin
LPS_DIRECTIONS = ((0, -0.5, 0), (0.7, 0, 0), (0, 0, 2.5))
LPS_ORIGIN = (10.0, 20.0, -30.0)
#: the same grid in RAS+: x and y of every world vector change sign
RAS_AFFINE = np.array([[0, -0.7, 0, -10.0], [0.5, 0, 0, -20.0], [0, 0, 2.5, -30.0],
                       [0, 0, 0, 1.0]])


def _nrrd_header(data_file=None):
    vectors = ' '.join('(' + ','.join(str(v) for v in vector) + ')' for vector in LPS_DIRECTIONS)
    lines = ['NRRD0004', 'type: int16', 'dimension: 3', 'space: left-posterior-superior',
             'sizes: 4 3 2', f'space directions: {vectors}', 'kinds: domain domain domain',
             'endian: little', 'encoding: raw',
             'space origin: (' + ','.join(str(v) for v in LPS_ORIGIN) + ')']
    if data_file:
        lines.append(f'data file: {data_file}')
    return ('\n'.join(lines) + '\n\n').encode()


def test_a_hand_written_nrrd_reads_as_x_y_z_with_its_ras_affine(tmp_path):
    # NRRD stores x fastest (Fortran order); its world space here is LPS, nibabel's is RAS
    path = tmp_path / 'scan.nrrd'
    path.write_bytes(_nrrd_header() + VOXELS.astype('<i2').tobytes(order='F'))
    volume = read_volume(path)
    assert volume.array.dtype == np.int16 and np.array_equal(volume.array, VOXELS)
    assert np.allclose(volume.affine, RAS_AFFINE)
    assert volume.spacing == pytest.approx((0.5, 0.7, 2.5)) and volume.shape == (4, 3, 2)
    # the detached form: header and voxels in two files
    (tmp_path / 'scan.raw').write_bytes(VOXELS.astype('<i2').tobytes(order='F'))
    (tmp_path / 'detached.nhdr').write_bytes(_nrrd_header('scan.raw'))
    detached = read_volume(tmp_path / 'detached.nhdr')
    assert np.array_equal(detached.array, VOXELS) and np.allclose(detached.affine, RAS_AFFINE)


def test_simpleitk_and_nibabel_agree_on_a_nifti_file(tmp_path):
    # ITK reads NIfTI too: through our LPS -> RAS conversion it must give nibabel's affine
    affine = oblique_affine((0.8, 0.9, 3.0), angle_degrees=25.0)
    image = nib.Nifti1Image(VOXELS, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    nib.save(image, str(tmp_path / 'scan.nii.gz'))
    by_nibabel = read_volume(tmp_path / 'scan.nii.gz')
    from tasks.common import volume_io
    by_itk = volume_io._read_itk(tmp_path / 'scan.nii.gz', 'volume')
    assert np.array_equal(by_itk.array, by_nibabel.array)
    assert np.allclose(by_itk.affine, by_nibabel.affine, atol=1e-5)
    assert by_itk.spacing == pytest.approx(by_nibabel.spacing)


@pytest.mark.parametrize('suffix', ['.nii.gz', '.nii', '.nrrd', '.mha'])
def test_every_format_round_trips_array_dtype_and_oblique_affine(tmp_path, suffix):
    affine = oblique_affine((0.8, 0.9, 3.0))
    array = np.random.default_rng(0).normal(300, 50, (7, 6, 5)).astype(np.float32)
    path = write_volume(array, affine, tmp_path / f'scan{suffix}')
    volume = read_volume(path)
    assert volume.array.dtype == np.float32 and np.array_equal(volume.array, array)
    assert np.allclose(volume.affine, affine, atol=1e-6)
    assert volume.spacing == pytest.approx((0.8, 0.9, 3.0), rel=1e-6)
    labels = (array > 300).astype(np.uint8)
    mask = read_volume(write_volume_like(labels, volume, tmp_path / f'mask{suffix}'))
    assert mask.array.dtype == np.uint8 and np.array_equal(mask.array, labels)
    assert np.allclose(mask.affine, volume.affine, atol=1e-6)
    assert not list(tmp_path.glob('.*partial*'))


def test_outputs_keep_the_itk_geometry_exactly_and_cross_formats_keep_the_affine(tmp_path):
    path = tmp_path / 'scan.nrrd'
    path.write_bytes(_nrrd_header() + VOXELS.astype('<i2').tobytes(order='F'))
    volume = read_volume(path)
    assert isinstance(volume.header, ItkGeometry)
    written = sitk.ReadImage(str(write_volume_like(VOXELS > 0, volume, tmp_path / 'mask.nrrd')))
    assert written.GetOrigin() == LPS_ORIGIN
    assert written.GetSpacing() == pytest.approx((0.5, 0.7, 2.5))
    assert np.allclose(np.reshape(written.GetDirection(), (3, 3)),
                       np.array(LPS_DIRECTIONS).T / (0.5, 0.7, 2.5))
    as_nifti = nib.load(str(write_volume_like(VOXELS > 0, volume, tmp_path / 'mask.nii.gz')))
    assert np.allclose(as_nifti.affine, RAS_AFFINE)
    with pytest.raises(ValueError, match=r'one-file form \(\.nrrd\)'):
        write_volume_like(VOXELS > 0, volume, tmp_path / 'mask.nhdr')


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path, monkeypatch):
    affine = oblique_affine((1.0, 1.0, 2.0))
    path = write_volume(VOXELS, affine, tmp_path / 'scan.nrrd')
    before = path.read_bytes()

    def broken(image, name, useCompression=False):
        with open(name, 'wb') as handle:
            handle.write(b'NRRD0004\ntruncated')
        raise RuntimeError('disk full')
    monkeypatch.setattr(sitk, 'WriteImage', broken)
    with pytest.raises(RuntimeError, match='disk full'):
        write_volume(VOXELS * 2, affine, path)
    assert path.read_bytes() == before and not list(tmp_path.glob('.*partial*'))


def test_vector_pixels_become_the_channel_axis(tmp_path):
    channels = np.stack([VOXELS, -VOXELS, VOXELS * 2], -1).astype(np.float32)  # (X, Y, Z, C)
    image = sitk.GetImageFromArray(channels.transpose(2, 1, 0, 3), isVector=True)
    image.SetSpacing((0.5, 0.7, 2.5))
    sitk.WriteImage(image, str(tmp_path / 'multi.nrrd'))
    volume = read_volume(tmp_path / 'multi.nrrd')
    assert volume.array.shape == (4, 3, 2, 3) and np.array_equal(volume.array, channels)
    assert volume.shape == (4, 3, 2)


def test_bad_files_are_named(tmp_path):
    plane = sitk.GetImageFromArray(np.zeros((5, 6), np.uint8))
    sitk.WriteImage(plane, str(tmp_path / 'plane.mha'))
    with pytest.raises(DataError, match=r'plane\.mha is a 2-D image.*3 spatial'):
        read_volume(tmp_path / 'plane.mha')
    good = write_volume(VOXELS, np.eye(4), tmp_path / 'scan.nrrd').read_bytes()
    (tmp_path / 'cut.nrrd').write_bytes(good[:len(good) // 2])
    with pytest.raises(DataError, match=r"label .*cut\.nrrd cannot be read as \.nrrd"):
        read_volume(tmp_path / 'cut.nrrd', 'label')
    (tmp_path / 'lost.nhdr').write_bytes(_nrrd_header('missing.raw'))
    with pytest.raises(DataError, match=r'lost\.nhdr cannot be read'):
        read_volume(tmp_path / 'lost.nhdr')
    (tmp_path / 'scan.png').write_bytes(b'')
    with pytest.raises(DataError, match=r'scan\.png is not a volume file'):
        read_volume(tmp_path / 'scan.png')


def test_names_and_suffixes():
    assert volume_suffix('a/case_0000.nii.gz') == '.nii.gz'
    assert volume_suffix('CASE.NRRD') == '.NRRD' and volume_stem('CASE.NRRD') == 'CASE'
    assert volume_stem('x/la_001_0000.nii.gz') == 'la_001_0000'
    assert volume_suffix('image.png') is None and not is_volume_file('image.png')
    assert [output_suffix(s) for s in ('.nii.gz', '.nhdr', '.mhd', '.mha')] == [
        '.nii.gz', '.nrrd', '.mha', '.mha']


def test_spacing_is_read_from_the_header_alone(tmp_path, monkeypatch):
    affine = oblique_affine((0.8, 0.9, 3.0))
    paths = [write_volume(VOXELS, affine, tmp_path / f'scan{suffix}')
             for suffix in ('.nii.gz', '.nrrd', '.mha')]
    from tasks.common import volume_io
    monkeypatch.setattr(volume_io, 'read_volume', None)  # no voxel read on a good header
    for path in paths:
        assert read_spacing(path) == pytest.approx((0.8, 0.9, 3.0), rel=1e-6)
    monkeypatch.undo()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.uint8)), str(tmp_path / 'flat.mha'))
    with pytest.raises(DataError, match=r'flat\.mha is a 2-D image'):
        read_spacing(tmp_path / 'flat.mha')
    (tmp_path / 'bad.nrrd').write_bytes(b'NRRD0004\nnonsense')
    with pytest.raises(DataError, match=r"image of case 'x' .*bad\.nrrd cannot be read"):
        read_spacing(tmp_path / 'bad.nrrd', "image of case 'x'")
