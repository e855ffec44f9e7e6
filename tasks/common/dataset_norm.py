"""``normalize=dict(mode='dataset')`` in a task's dataset configs: measured once on the training
images when a run starts, then written into the configs as the concrete window and mean/std;
evaluation and inference take the numbers from the training checkpoint instead."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mmengine.config import ConfigDict
from mmengine.logging import print_log

from .intensity import DATASET_MODE, dataset_normalization
from .io import read_image, to_channels

__all__ = ['resolve_dataset_normalization', 'MAX_STATISTICS_IMAGES']

#: at most this many training images (evenly spaced) are read for the statistics
MAX_STATISTICS_IMAGES = 500


def resolve_dataset_normalization(dataset_cfgs: Sequence[ConfigDict], checkpoint_meta: Mapping[str, Any],
                                  training_images: Callable[[], Sequence[Path]],
                                  in_channels: int) -> None:
    """Replace ``mode='dataset'`` in ``dataset_cfgs`` by its measured window and mean/std.

    Args:
        dataset_cfgs: the dataset configs of a run (train, val, test).
        checkpoint_meta: a training checkpoint's ``dataset_meta`` ({} when training): its
            ``normalize`` wins, so evaluation applies what training measured.
        training_images: returns the training image files (called only when measuring).
        in_channels: channels the images are converted to before measuring.
    """
    wanted = [d for d in dataset_cfgs if (d.get('normalize') or {}).get('mode') == DATASET_MODE]
    if not wanted:
        return
    saved = checkpoint_meta.get('normalize')
    if saved and saved.get('mode') != DATASET_MODE:
        resolved, source = dict(saved), 'the checkpoint'
    else:
        files = list(training_images())
        files = files[::max(1, len(files) // MAX_STATISTICS_IMAGES)]
        images = [to_channels(read_image(path), in_channels, path) for path in files]
        percentiles = tuple(wanted[0].normalize.get('percentiles', (0.5, 99.5)))
        resolved = dataset_normalization(images, percentiles)
        source = f'{len(images)} training images'
    low = resolved['center'] - resolved['width'] / 2
    high = resolved['center'] + resolved['width'] / 2
    print_log(f'normalize (mode=dataset, from {source}): clip to {low:.4g}..{high:.4g}, mean '
              f'{resolved["mean"]}, std {resolved["std"]}', logger='current')
    for dataset in wanted:
        dataset.normalize = ConfigDict(resolved)
