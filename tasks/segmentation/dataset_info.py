"""What a segmentation folder holds: its classes, image channels, counts, sizes and class shares.

Classes come, in this order of precedence, from ``DATA_ROOT/dataset.json`` (the nnU-Net v2 /
Medical Segmentation Decathlon description: ``labels`` as name -> index, or Decathlon's index ->
name), from ``DATA_ROOT/classes.txt`` (one name per line, index = line), or from the values found
in the training masks (``background``, ``class_1``, ...). Channels come from the images: gray is
1, colour 3; a set that mixes them is an error naming two files.

:func:`scan_folder` reads every image and mask once and collects every problem instead of stopping
at the first, so ``tools/check_data.py`` can list them all and training can refuse bad data before
its first iteration.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..common.io import DataError, image_size, read_image
from .io import pair_samples, read_mask

__all__ = ['ClassNames', 'SplitSummary', 'SegDatasetInfo', 'read_class_names', 'scan_folder',
           'DESCRIPTION_FILES']

DESCRIPTION_FILES = ('dataset.json', 'classes.txt')


@dataclass(frozen=True)
class ClassNames:
    """Class names in index order, where they were read, and the channel names if given."""

    names: Tuple[str, ...]
    source: str
    channel_names: Optional[Tuple[str, ...]] = None


@dataclass
class SplitSummary:
    """One split: its pairs, image sizes, channels and the pixels of each mask value."""

    pairs: int = 0
    sizes: List[Tuple[int, int]] = field(default_factory=list)
    channels: Dict[int, str] = field(default_factory=dict)  # channel count -> first file
    pixels: Dict[int, int] = field(default_factory=dict)  # mask value -> pixel count

    def size_range(self) -> str:
        """'HxW' or 'HxW .. HxW' over the split's images."""
        if not self.sizes:
            return '-'
        low = min(self.sizes, key=lambda hw: hw[0] * hw[1])
        high = max(self.sizes, key=lambda hw: hw[0] * hw[1])
        return f'{low[0]}x{low[1]}' + ('' if low == high else f' .. {high[0]}x{high[1]}')


@dataclass
class SegDatasetInfo:
    """The result of :func:`scan_folder`."""

    root: Path
    classes: Tuple[str, ...]
    class_source: str
    in_channels: Optional[int]
    channel_source: str
    splits: Dict[str, SplitSummary]
    problems: List[str]
    warnings: List[str]
    ignore_index: int = 255

    def class_shares(self, split: str = 'train') -> Dict[str, float]:
        """Fraction of the split's scored pixels per class."""
        pixels = self.splits[split].pixels if split in self.splits else {}
        total = sum(count for value, count in pixels.items() if value != self.ignore_index)
        return {name: pixels.get(index, 0) / total if total else 0.0
                for index, name in enumerate(self.classes)}

    def summary(self) -> str:
        """A few lines for the log and for ``tools/check_data.py``."""
        lines = [f'dataset {self.root}',
                 f'  classes ({len(self.classes)}, from {self.class_source}): '
                 + ', '.join(f'{index} {name}' for index, name in enumerate(self.classes)),
                 f'  channels: {self.in_channels} (from {self.channel_source})']
        for split, info in self.splits.items():
            lines.append(f'  {split}: {info.pairs} images, sizes {info.size_range()}')
        if 'train' in self.splits:
            lines.append('  train pixels per class: ' + ', '.join(
                f'{name} {share:.1%}' for name, share in self.class_shares('train').items()))
        lines += [f'  warning: {text}' for text in self.warnings]
        lines += [f'  problem: {text}' for text in self.problems]
        return '\n'.join(lines)

    def raise_problems(self) -> None:
        """Raise a :class:`DataError` listing every problem, if there is any."""
        if self.problems:
            shown = self.problems[:20]
            more = len(self.problems) - len(shown)
            raise DataError(f'{self.root}: {len(self.problems)} problem(s) in the dataset:\n  '
                            + '\n  '.join(shown) + (f'\n  ... and {more} more' if more else '')
                            + '\n(python tools/check_data.py DATA_ROOT lists them all)')


#: class indices are stored as uint8 with 255 meaning "ignore": at most 255 classes (0..254)
MAX_CLASSES = 255


def _check_class_count(path: Path, count: int) -> None:
    if count > MAX_CLASSES:
        raise DataError(f'{path} declares {count} classes; at most {MAX_CLASSES} are supported '
                        f'(class indices are stored as uint8, 255 marks ignored pixels)')


def _labels_of(path: Path, labels: object) -> Tuple[str, ...]:
    """Class names from nnU-Net's ``{name: index}`` or Decathlon's ``{"index": name}``."""
    if not isinstance(labels, dict) or not labels:
        raise DataError(f'{path}: "labels" must map class names to indices (nnU-Net: '
                        f'{{"background": 0, "tumour": 1}}), got {labels!r}')
    if all(isinstance(k, str) and k.isdigit() and isinstance(v, str) for k, v in labels.items()):
        by_index = {int(k): v for k, v in labels.items()}  # Decathlon: {"0": "background"}
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        by_index = {v: k for k, v in labels.items()}
        if len(by_index) != len(labels):
            raise DataError(f'{path}: two labels share an index: {labels!r}')
    else:
        raise DataError(f'{path}: "labels" must map each class name to one integer index; '
                        f'region labels (lists of indices) are not supported: {labels!r}')
    if sorted(by_index) != list(range(len(by_index))):
        raise DataError(f'{path}: label indices must be 0..{len(by_index) - 1} without gaps, got '
                        f'{sorted(by_index)}')
    _check_class_count(path, len(by_index))
    return tuple(by_index[index] for index in range(len(by_index)))


def read_class_names(root: Path) -> Optional[ClassNames]:
    """Classes from ``dataset.json`` or ``classes.txt`` in ``root``, else None."""
    description = root / 'dataset.json'
    if description.is_file():
        try:
            data = json.loads(description.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f'{description} is not valid JSON: {err}') from None
        if not isinstance(data, dict) or 'labels' not in data:
            raise DataError(f'{description} has no "labels" entry (nnU-Net / Decathlon '
                            f'dataset.json: {{"labels": {{"background": 0, ...}}}})')
        channels = data.get('channel_names', data.get('modality'))
        channel_names = None
        if isinstance(channels, dict):
            channel_names = tuple(str(channels[key]) for key in sorted(channels, key=int))
        return ClassNames(_labels_of(description, data['labels']), str(description), channel_names)
    listing = root / 'classes.txt'
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines()]
        while names and not names[-1]:
            names.pop()
        if len(names) < 2 or not all(names):
            raise DataError(f'{listing} must list at least 2 class names, one per line (background '
                            f'first), with no empty line between them; got {names!r}')
        _check_class_count(listing, len(names))
        return ClassNames(tuple(names), str(listing))
    return None


def _scan_split(root: Path, split: str, img_dir: str, mask_dir: str, problems: List[str]
                ) -> Optional[SplitSummary]:
    folder = root / split
    if not folder.is_dir():
        return None
    summary = SplitSummary()
    try:
        pairs = pair_samples(folder / img_dir, folder / mask_dir, problems)
    except DataError as err:  # a missing folder or no image at all
        problems.append(str(err))
        return summary
    summary.pairs = len(pairs)
    for pair in pairs:
        try:
            image, mask = read_image(pair.image), read_mask(pair.mask)
        except DataError as err:
            problems.append(str(err))
            continue
        channels = 1 if image.ndim == 2 else image.shape[2]
        summary.channels.setdefault(channels, str(pair.image))
        summary.sizes.append(image_size(image))
        if image_size(image) != image_size(mask):
            problems.append(f'image {pair.image} is {image_size(image)} (H, W) but its mask '
                            f'{pair.mask} is {image_size(mask)}; they must match')
        values, counts = np.unique(mask, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist()):
            summary.pixels[value] = summary.pixels.get(value, 0) + count
            if value < 0:
                problems.append(f'mask {pair.mask} holds the negative value {value}')
    return summary


def _first_mask_with(root: Path, split: str, mask_dir: str, value: int) -> str:
    for path in sorted((root / split / mask_dir).glob('*.png')):
        try:
            if (read_mask(path) == value).any():
                return str(path)
        except DataError:
            continue
    return str(root / split / mask_dir)


def scan_folder(data_root: str, splits: Sequence[str] = ('train', 'val'), img_dir: str = 'images',
                mask_dir: str = 'masks', ignore_index: int = 255) -> SegDatasetInfo:
    """Read every image and mask of ``splits`` once; describe the set and collect its problems."""
    root = Path(data_root).expanduser()
    problems: List[str] = []
    warnings: List[str] = []
    if not root.is_dir():
        raise DataError(f'data root {root} does not exist; expected a folder holding '
                        f'train/{img_dir} and train/{mask_dir} (see docs/segmentation.md)')
    summaries = {split: s for split in splits
                 if (s := _scan_split(root, split, img_dir, mask_dir, problems)) is not None}
    for split in splits:
        if split not in summaries:
            problems.append(f'{root / split} not found; expected {split}/{img_dir} and '
                            f'{split}/{mask_dir}')
    for split, info in summaries.items():
        if info.pairs == 0 and not any(split in text for text in problems):
            problems.append(f'{root / split} holds no image/mask pairs')

    declared = read_class_names(root)
    found = sorted({value for info in summaries.values() for value in info.pixels
                    if value != ignore_index})
    if declared is not None:
        classes, class_source = declared.names, declared.source
        for split, info in summaries.items():
            for value in sorted(info.pixels):
                if value != ignore_index and value >= len(classes):
                    problems.append(
                        f'mask {_first_mask_with(root, split, mask_dir, value)} holds value {value}, '
                        f'but {class_source} declares {len(classes)} classes (0..{len(classes) - 1}) '
                        f'and {ignore_index} is ignore')
        unused = [name for index, name in enumerate(classes) if index not in found]
        if unused:
            warnings.append(f'{class_source} declares {unused}, which no mask holds')
    else:
        top = max(found, default=1)
        classes = ('background',) + tuple(f'class_{value}' for value in range(1, max(top, 1) + 1))
        class_source = f'the values in the masks ({found})'

    channel_counts = {count: path for info in summaries.values()
                      for count, path in info.channels.items()}
    in_channels: Optional[int] = None
    channel_source = 'the images'
    if len(channel_counts) > 1:
        (one, first), (other, second) = sorted(channel_counts.items())[:2]
        problems.append(f'images mix channel counts: {first} has {one}, {second} has {other}; '
                        f'convert them to one (gray or RGB)')
    elif channel_counts:
        in_channels = next(iter(channel_counts))
        if declared is not None and declared.channel_names is not None \
                and len(declared.channel_names) != in_channels:
            problems.append(f'{declared.source} names {len(declared.channel_names)} channels '
                            f'{list(declared.channel_names)} but the images have {in_channels} '
                            f'({channel_counts[in_channels]})')
    return SegDatasetInfo(root=root, classes=tuple(classes), class_source=class_source,
                          in_channels=in_channels, channel_source=channel_source,
                          splits=summaries, problems=problems, warnings=warnings,
                          ignore_index=ignore_index)
