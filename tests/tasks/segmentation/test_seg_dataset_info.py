"""The dataset says what it holds: classes from dataset.json, classes.txt or the mask values,
channels from the images, every problem collected; and configs that follow it (issue 13)."""
import json

import cv2
import numpy as np
import pytest

from seg_data import binary, five_classes, write_set
from tasks.common.io import DataError
from tasks.segmentation.dataset_info import read_class_names, scan_folder


def test_binary_masks_without_a_description_give_two_classes(tmp_path):
    info = scan_folder(str(write_set(tmp_path, binary)))
    assert info.classes == ('background', 'class_1') and info.in_channels == 1
    assert 'values in the masks' in info.class_source and info.problems == []
    assert info.splits['train'].pairs == 2 and info.splits['val'].pairs == 1
    shares = info.class_shares()
    assert shares['background'] + shares['class_1'] == pytest.approx(1.0) and shares['class_1'] > 0


def test_five_classes_named_by_an_nnunet_dataset_json(tmp_path):
    root = write_set(tmp_path, five_classes)
    labels = {'background': 0, 'liver': 1, 'kidney': 2, 'spleen': 3, 'bone': 4}
    (root / 'dataset.json').write_text(json.dumps({'labels': labels, 'channel_names': {'0': 'CT'}}))
    info = scan_folder(str(root))
    assert info.classes == tuple(labels) and info.class_source.endswith('dataset.json')
    assert 'kidney' in info.summary() and '5, from' in info.summary()


def test_decathlon_labels_index_to_name(tmp_path):
    (tmp_path / 'dataset.json').write_text(json.dumps(
        {'labels': {'0': 'background', '1': 'tumour'}, 'modality': {'0': 'MRI'}}))
    names = read_class_names(tmp_path)
    assert names.names == ('background', 'tumour') and names.channel_names == ('MRI',)


def test_sixteen_bit_grayscale_tiffs(tmp_path):
    root = write_set(tmp_path, binary, lambda mask, seed: mask.astype(np.uint16) * 3000 + 500,
                     suffix='.tif')
    info = scan_folder(str(root))
    assert info.in_channels == 1 and info.problems == [] and info.splits['train'].pairs == 2


def test_rgb_pngs_named_by_classes_txt(tmp_path):
    root = write_set(tmp_path, five_classes, lambda mask, seed: np.dstack([mask * 50] * 3).astype(np.uint8))
    (root / 'classes.txt').write_text('background\na\nb\nc\nd\n')
    info = scan_folder(str(root))
    assert info.in_channels == 3 and info.classes == ('background', 'a', 'b', 'c', 'd')


def test_every_problem_is_collected_with_its_file(tmp_path):
    root = write_set(tmp_path, five_classes)
    (root / 'classes.txt').write_text('background\nfg\n')  # 2 classes, masks hold 0..4
    rgb = np.dstack([five_classes(1)] * 3).astype(np.uint8)
    cv2.imwrite(str(root / 'val' / 'images' / 's0.png'), rgb)  # mixes 1 and 3 channels
    (root / 'val' / 'masks' / 'orphan.png').write_bytes(b'')
    info = scan_folder(str(root))
    text = '\n'.join(info.problems)
    assert 'holds value 2, but' in text and 'classes.txt declares 2 classes' in text
    assert 'images mix channel counts' in text and 'val/images/s0.png has 3' in text.replace('\\', '/')
    assert 'orphan' in text
    with pytest.raises(DataError, match=r'problem\(s\) in the dataset'):
        info.raise_problems()


def test_declared_labels_no_mask_holds_are_a_warning(tmp_path):
    root = write_set(tmp_path, binary)
    (root / 'dataset.json').write_text(json.dumps({'labels': {'background': 0, 'a': 1, 'b': 2}}))
    info = scan_folder(str(root))
    assert info.problems == [] and any("['b']" in text for text in info.warnings)


@pytest.mark.parametrize('labels,match', [
    ({'background': 0, 'a': 2}, 'without gaps'),
    ({'background': 0, 'both': [1, 2]}, 'region labels'),
    ([], 'must map class names'),
    ({f'c{i}': i for i in range(256)}, r'256 classes; at most 255 .*255 marks ignored'),
])
def test_bad_dataset_json(tmp_path, labels, match):
    (tmp_path / 'dataset.json').write_text(json.dumps({'labels': labels}))
    with pytest.raises(DataError, match=match):
        read_class_names(tmp_path)


def test_255_classes_fit_and_256_in_classes_txt_do_not(tmp_path):
    (tmp_path / 'classes.txt').write_text('\n'.join(f'c{i}' for i in range(255)))
    assert len(read_class_names(tmp_path).names) == 255
    (tmp_path / 'classes.txt').write_text('\n'.join(f'c{i}' for i in range(256)))
    with pytest.raises(DataError, match=r'classes.txt declares 256 classes'):
        read_class_names(tmp_path)


def test_an_empty_or_missing_split_is_a_problem(tmp_path):
    root = write_set(tmp_path, binary, splits=(('train', 1),))
    (root / 'val' / 'images').mkdir(parents=True)
    (root / 'val' / 'masks').mkdir(parents=True)
    problems = scan_folder(str(root), ('train', 'val', 'test')).problems
    assert any('val' in p and 'no image' in p for p in problems)
    assert any(p.endswith("expected test/images and test/masks") for p in problems)


def test_check_data_tool_prints_and_exits_by_the_problems(tmp_path, capsys):
    from tool_loader import tool

    good = write_set(tmp_path / 'good', binary)
    assert tool('check_data').main([str(good)]) == 0
    assert 'classes (2, from the values in the masks' in capsys.readouterr().out
    bad = write_set(tmp_path / 'bad', binary)
    cv2.imwrite(str(bad / 'train' / 'masks' / 's0.png'), np.zeros((10, 10), np.uint8))
    assert tool('check_data').main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert 'problem: image' in out and 'must match' in out and '1 problem(s)' in out
