"""The embedded segmentation demo data: shipped, small, valid; instances become classes."""
import numpy as np

from tasks.common.io import read_image
from tasks.segmentation import SegFolderDataset
from tasks.segmentation.demo import DEMO_CLASSES, DEMO_DATA_ROOT, instances_to_classes
from tasks.segmentation.io import read_mask


def test_demo_data_is_shipped_and_valid():
    files = [p for p in DEMO_DATA_ROOT.rglob('*') if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2 * 1024 ** 2
    assert (DEMO_DATA_ROOT / 'LICENSE-stardist.txt').read_text().startswith('BSD 3-Clause')
    for split, count in (('train', 4), ('val', 2)):
        data = SegFolderDataset(str(DEMO_DATA_ROOT), split=split, classes=DEMO_CLASSES, in_channels=1)
        assert len(data) == count
    mask = read_mask(DEMO_DATA_ROOT / 'val/masks/nuclei_r392_c000.png')
    assert set(np.unique(mask)) == {0, 1, 2}
    assert read_image(DEMO_DATA_ROOT / 'val/images/nuclei_r392_c000.png').dtype == np.uint16


def test_instances_to_classes_rings_each_instance():
    labels = np.zeros((12, 12), np.int32)
    labels[1:7, 1:7] = 1
    labels[1:7, 7:11] = 2  # touching neighbour
    classes = instances_to_classes(labels, contour_width=1)
    assert classes[0].max() == 0  # background stays
    assert classes[3, 6] == 2 and classes[3, 7] == 2  # the shared border is contour on both sides
    assert classes[3, 3] == 1  # interior
