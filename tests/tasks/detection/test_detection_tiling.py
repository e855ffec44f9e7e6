"""Tiling a COCO set (tasks/detection/tiling.py, tools/tile_coco.py): tile placement, pixels, boxes
clipped by their visible share, errors that name the file, and the tool end to end."""
import json

import numpy as np
import pytest
from PIL import Image

from tasks.common.io import DataError
from tasks.detection.coco import load_coco
from tasks.detection.tiling import tile_boxes, tile_coco, tile_coco_split
from tool_loader import tool


def test_tile_boxes_keep_the_visible_share_and_clip():
    boxes = [[10, 10, 20, 10],   # wholly inside
             [28, 0, 8, 4],      # half inside (x 28..36 against a tile ending at 32)
             [29, 0, 10, 4],     # 0.3 inside
             [40, 40, 5, 5]]     # outside
    kept = tile_boxes(boxes, (0, 0, 32, 32), min_visible=0.5)
    assert [(i, b, round(s, 6)) for i, b, s in kept] == [(0, [10, 10, 20, 10], 1.0),
                                                       (1, [28, 0, 4, 4], 0.5)]
    shifted = tile_boxes(boxes, (16, 0, 32, 32), min_visible=0.25)
    assert [(i, b) for i, b, _ in shifted] == [(0, [0, 10, 14, 10]), (1, [12, 0, 8, 4]),
                                               (2, [13, 0, 10, 4])]
    with pytest.raises(ValueError, match='min_visible must be in'):
        tile_boxes(boxes, (0, 0, 32, 32), min_visible=0.0)


def make_coco(root, size=(50, 70)):
    """One gray image whose pixel values are their own index, two boxes, one category."""
    (root / 'images').mkdir(parents=True)
    height, width = size
    pixels = (np.arange(height * width) % 251).reshape(height, width).astype(np.uint8)
    Image.fromarray(pixels).save(root / 'images' / 'scan.png')
    data = dict(images=[dict(id=7, file_name='scan.png', width=width, height=height)],
                annotations=[dict(id=1, image_id=7, category_id=3, bbox=[2, 2, 10, 10],
                                  area=100, iscrowd=0),
                             dict(id=2, image_id=7, category_id=3, bbox=[30, 20, 10, 10],
                                  area=80, iscrowd=0),
                             dict(id=3, image_id=7, category_id=3, bbox=[45, 10, 10, 20],
                                  area=150, iscrowd=0)],
                categories=[dict(id=3, name='cell')])
    (root / 'val.json').write_text(json.dumps(data))
    return pixels


def test_split_tiles_cover_the_image_with_full_size_tiles(tmp_path):
    pixels = make_coco(tmp_path / 'src')
    counts = tile_coco_split(tmp_path / 'src', tmp_path / 'out', 'val.json', tile=32)
    tiled = json.loads((tmp_path / 'out' / 'val.json').read_text())
    # 50 rows -> tiles at 0 and 18, 70 columns -> 0, 19 and 38: six full 32 x 32 tiles
    offsets = [tuple(image['source_offset']) for image in tiled['images']]
    assert offsets == [(0, 0), (19, 0), (38, 0), (0, 18), (19, 18), (38, 18)]
    assert counts == dict(images=1, tiles=6, boxes=len(tiled['annotations']))
    for image in tiled['images']:
        x0, y0 = image['source_offset']
        tile = np.asarray(Image.open(tmp_path / 'out' / 'images' / image['file_name']))
        assert tile.shape == (32, 32) == (image['height'], image['width'])
        assert np.array_equal(tile, pixels[y0:y0 + 32, x0:x0 + 32])
    boxes = {(tuple(image['source_offset']), tuple(ann['bbox']), round(ann['area'], 6))
             for image in tiled['images'] for ann in tiled['annotations']
             if ann['image_id'] == image['id']}
    # box 1 lies in the first tile only; box 2 (x 30..40) wholly in the x=19 tiles and 0.2 in
    # its neighbours (dropped); box 3 (x 45..55, y 10..30, declared area 150) 0.6 in (19, 0) and
    # (38, 18), wholly in (38, 0), 0.36 in (19, 18) (dropped); areas scale with the share
    assert boxes == {((0, 0), (2, 2, 10, 10), 100.0),
                     ((19, 0), (11, 20, 10, 10), 80.0), ((19, 18), (11, 2, 10, 10), 80.0),
                     ((19, 0), (26, 10, 6, 20), 90.0), ((38, 0), (7, 10, 10, 20), 150.0),
                     ((38, 18), (7, 0, 10, 12), 90.0)}
    loaded = load_coco(tmp_path / 'out' / 'val.json', tmp_path / 'out' / 'images')
    assert len(loaded.records) == 6 and loaded.classes == ('cell',)  # a valid COCO set


def test_images_smaller_than_the_tile_stay_whole(tmp_path):
    make_coco(tmp_path / 'src', size=(20, 24))
    tile_coco_split(tmp_path / 'src', tmp_path / 'out', 'val.json', tile=(32, 64))
    tiled = json.loads((tmp_path / 'out' / 'val.json').read_text())
    assert [(i['width'], i['height'], i['source_offset']) for i in tiled['images']] == \
        [(24, 20, [0, 0])]


def test_tiling_errors_name_the_file(tmp_path):
    make_coco(tmp_path / 'src')
    with pytest.raises(ValueError, match='is the source set'):
        tile_coco(tmp_path / 'src', tmp_path / 'src', 32)
    with pytest.raises(DataError, match=r'holds none of'):
        tile_coco(tmp_path / 'out', tmp_path / 'elsewhere', 32)
    data = json.loads((tmp_path / 'src' / 'val.json').read_text())
    data['images'][0]['width'] = 71
    (tmp_path / 'src' / 'val.json').write_text(json.dumps(data))
    with pytest.raises(DataError, match=r'scan.png is 70 x 50 px but .*val.json says 71 x 50'):
        tile_coco(tmp_path / 'src', tmp_path / 'out', 32)
    (tmp_path / 'src' / 'images' / 'scan.png').unlink()
    with pytest.raises(DataError, match=r"image id 7 names 'scan.png', which is not in"):
        tile_coco(tmp_path / 'src', tmp_path / 'out', 32)


def test_tool_tiles_every_split_present(tmp_path, capsys):
    make_coco(tmp_path / 'src')
    counts = tool('tile_coco').main([str(tmp_path / 'src'), '--tile', '32', '48',
                                     '--out', str(tmp_path / 'out')])
    assert set(counts) == {'val.json'} and counts['val.json']['tiles'] == 4  # rows 0, 18; x 0, 22
    assert 'val.json: 1 images -> 4 tiles' in capsys.readouterr().out
