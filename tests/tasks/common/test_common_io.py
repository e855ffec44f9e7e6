"""tasks.common.io: images keep their depth, layout and colour order; inputs expand to files."""
import cv2
import numpy as np
import pytest
import tifffile

from tasks.common.io import DataError, expand_inputs, read_image, shorten_list, to_channels


@pytest.mark.parametrize('suffix,array', [
    ('.png', np.arange(48, dtype=np.uint8).reshape(6, 8)),
    ('.png', (np.arange(48, dtype=np.uint16) * 1000).reshape(6, 8)),
    ('.tif', (np.arange(48, dtype=np.uint16) * 1000).reshape(6, 8)),
    ('.tif', np.random.rand(6, 8, 3).astype(np.float32)),
])
def test_read_image_keeps_depth_and_layout(tmp_path, suffix, array):
    path = tmp_path / f'img{suffix}'
    if suffix == '.tif':
        tifffile.imwrite(path, array, photometric='rgb' if array.ndim == 3 else 'minisblack')
    else:
        cv2.imwrite(str(path), array)
    image = read_image(path)
    assert image.dtype == array.dtype
    assert image.shape == (6, 8, 1 if array.ndim == 2 else 3)
    assert np.array_equal(image.reshape(array.shape), array)


def test_read_image_rgb_png_is_rgb(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / 'red.png'), rgb[..., ::-1])
    assert read_image(tmp_path / 'red.png')[0, 0].tolist() == [200, 0, 0]


def test_to_channels_repeats_gray_and_makes_luminance(tmp_path):
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    assert to_channels(gray, 3, tmp_path).shape == (2, 3, 3)
    rgba = np.full((2, 3, 4), 100, np.uint8)
    assert to_channels(rgba, 1, tmp_path)[..., 0].tolist() == [[100] * 3] * 2
    with pytest.raises(DataError, match='has 3 channels but the model takes 2'):
        to_channels(rgba[..., :3], 2, tmp_path)


def test_expand_inputs_takes_files_folders_and_globs_once(tmp_path):
    for name in ('a.png', 'b.TIF', 'notes.txt'):
        (tmp_path / name).write_bytes(b'')
    found = expand_inputs([str(tmp_path), str(tmp_path / '*.png'), str(tmp_path / 'a.png')])
    assert [path.name for path in found] == ['a.png', 'b.TIF']
    with pytest.raises(FileNotFoundError, match='nothing_here'):
        expand_inputs([str(tmp_path / 'nothing_here*.png')])


def test_shorten_list_counts_what_it_leaves_out():
    assert shorten_list([1, 2]) == '1, 2'
    assert shorten_list(list(range(8)), limit=3) == '0, 1, 2 and 5 more'
