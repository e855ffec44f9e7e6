"""tasks.common.inference: output names that never overwrite each other."""
from pathlib import Path

from tasks.common.inference import output_names


def test_output_names_keep_stems_and_add_folders_only_for_namesakes(tmp_path):
    files = [tmp_path / 'val/images/s0.png', tmp_path / 'train/images/s0.png',
             tmp_path / 'train/images/s1.png', Path(tmp_path / 'odd.tif')]
    assert output_names(files) == ['val_images_s0', 'train_images_s0', 's1', 'odd']
