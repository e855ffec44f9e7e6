"""The inferencer every task builds on: a trained model, loaded once, run over image files.

:class:`Inferencer` does what does not depend on the task: it loads the config's model with a
checkpoint's weights, expands the user's inputs (files, folders, globs), reads each image and
normalises it as the config's test dataset does, names the outputs so none overwrite another
(:func:`output_names`), refuses to replace files already there unless told to
(:func:`refuse_existing`), and collects the files written. A task's inferencer names its outputs'
suffixes (:attr:`Inferencer.output_suffixes`, or overrides :meth:`Inferencer.output_paths`) and
implements :meth:`Inferencer.predict_image` (one prepared image -> its prediction) and
:meth:`Inferencer.write` (a prediction -> the files of :meth:`Inferencer.output_paths`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config

from ..engine.checkpoint import load_trained_model
from .intensity import build_intensity_norm
from .io import IMAGE_SUFFIXES, expand_inputs, read_image, to_channels

__all__ = ['Inferencer', 'output_names', 'refuse_existing']

PathLike = Union[str, Path]


def output_names(files: Sequence[Path]) -> List[str]:
    """Output stems: the file's stem, or for a stem shared by several inputs, each one's path
    below their common folder (``val/images/a.png`` -> ``val_images_a``), so none overwrite."""
    stems = [path.stem for path in files]
    names = []
    for stem, path in zip(stems, files):
        namesakes = [other.resolve() for other, other_stem in zip(files, stems)
                     if other_stem == stem]
        if len(namesakes) == 1:
            names.append(stem)
            continue
        common = Path(os.path.commonpath([str(other.parent) for other in namesakes]))
        names.append('_'.join(path.resolve().relative_to(common).with_suffix('').parts))
    return names


def refuse_existing(paths: Iterable[Path], overwrite: bool = False) -> None:
    """Raise FileExistsError naming the first of ``paths`` that exists, unless ``overwrite``.

    Called with every output a run will write before it writes any, so a refused run leaves the
    folder as it was.

    Args:
        paths: the files about to be written.
        overwrite: allow replacing existing files.
    """
    if overwrite:
        return
    existing = [path for path in paths if Path(path).exists()]
    if existing:
        more = f' (and {len(existing) - 1} more of the outputs)' if len(existing) > 1 else ''
        raise FileExistsError(f'{existing[0]} exists{more}; nothing was written. Pass '
                              f'--overwrite (overwrite=True) to replace it, or choose another '
                              f'output folder')


class Inferencer:
    """A trained model plus the image preparation it was trained with; subclass per task.

    Args:
        cfg: the training config (its model, and its test dataset's ``in_channels`` and
            ``normalize``, which the images are prepared with).
        checkpoint: a checkpoint written by training.
        device: 'cuda', 'cpu' ...; default CUDA when available.

    Attributes:
        model: the model in eval mode on ``device``.
        checkpoint_meta: the checkpoint's ``meta`` (``dataset_meta`` holds the class names).
        dataset_cfg: the config of the dataset the images are prepared like.
        output_suffixes: what :meth:`output_paths` appends to an output name, one per file.
    """

    output_suffixes: Tuple[str, ...] = ()

    def __init__(self, cfg: Config, checkpoint: str, device: Optional[str] = None) -> None:
        self.cfg = cfg
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.model, self.checkpoint_meta = load_trained_model(cfg, checkpoint, self.device)
        self.dataset_cfg = (cfg.get('test_dataloader') or cfg.val_dataloader).dataset
        self.in_channels = self.dataset_cfg.get('in_channels', 3)
        self.norm = build_intensity_norm(self.dataset_cfg.get('normalize'))

    def load(self, path: PathLike) -> np.ndarray:
        """An image file as float32 ``(H, W, in_channels)`` in [0, 1], as the dataset reads it."""
        return self.norm.to_unit(to_channels(read_image(Path(path)), self.in_channels, path))

    def predict_image(self, image: np.ndarray, path: Path) -> Any:
        """The task's prediction for one image from :meth:`load`; subclasses implement it."""
        raise NotImplementedError

    def output_paths(self, folder: Path, name: str, path: Path) -> List[Path]:
        """The files :meth:`write` writes for the input ``path`` named ``name``:
        ``folder/<name><suffix>`` per :attr:`output_suffixes`."""
        return [folder / f'{name}{suffix}' for suffix in self.output_suffixes]

    def write(self, folder: Path, name: str, image: np.ndarray, prediction: Any,
              path: Path) -> List[Path]:
        """Write the outputs of one image, the files of :meth:`output_paths`; return them.
        Subclasses implement it."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, path: PathLike) -> Tuple[np.ndarray, Any]:
        """``(image in [0, 1] (H, W, C), prediction)`` for one image file."""
        image = self.load(path)
        return image, self.predict_image(image, Path(path))

    def run(self, inputs: Sequence[str], out_dir: PathLike,
            overwrite: bool = False) -> List[Path]:
        """Predict every image the inputs name (files, folders, globs); return the files written.

        Args:
            inputs: image files, folders of images, glob patterns.
            out_dir: the output folder (created if missing).
            overwrite: replace outputs already in ``out_dir``; without it an existing one stops
                the run before anything is predicted or written.
        """
        files = expand_inputs(inputs, IMAGE_SUFFIXES)
        folder = Path(out_dir)
        names = output_names(files)
        refuse_existing((planned for path, name in zip(files, names)
                         for planned in self.output_paths(folder, name, path)), overwrite)
        folder.mkdir(parents=True, exist_ok=True)
        written: List[Path] = []
        for path, name in zip(files, names):
            image, prediction = self.predict(path)
            written += self.write(folder, name, image, prediction, path)
        return written
