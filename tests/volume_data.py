"""Small synthetic volume datasets (NIfTI, or NRRD / MetaImage) in the nnU-Net v2 raw layout,
written by the tests that need them.

Cases have anisotropic spacing and an oblique direction (a rotation in the affine), one bright
ellipsoid per case labelled 1, and intensities unlike 8-bit images (MRI-like floats or CT-like
Hounsfield units), so the volume code is exercised on what real scans look like.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np


def oblique_affine(spacing: Sequence[float], angle_degrees: float = 20.0,
                   origin: Sequence[float] = (-40.0, 12.5, 7.0)) -> np.ndarray:
    """A voxel-to-world affine: ``spacing`` along each axis, rotated about the world y axis."""
    angle = np.deg2rad(angle_degrees)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0],
                         [-np.sin(angle), 0, np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def synthetic_case(shape: Tuple[int, int, int], seed: int, channels: int = 1, ct: bool = False
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """``(image (X, Y, Z, C) float32, label (X, Y, Z) uint8)``: noise plus one bright ellipsoid."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing='ij'), -1).astype(float)
    centre = np.array([rng.uniform(0.3, 0.7) * n for n in shape])
    radii = np.array([max(2.0, 0.18 * n) for n in shape])
    label = (((grid - centre) / radii) ** 2).sum(-1) <= 1.0
    base, lift, noise = (-100.0, 160.0, 20.0) if ct else (300.0, 500.0, 60.0)
    images = [base + lift * (c + 1) * label + rng.normal(0.0, noise, shape) for c in range(channels)]
    return np.stack(images, -1).astype(np.float32), label.astype(np.uint8)


def write_volume_dataset(root: Path, cases: int = 4, shape: Tuple[int, int, int] = (40, 36, 6),
                         spacing: Sequence[float] = (0.8, 0.8, 3.0),
                         channel_names: Sequence[str] = ('T1',),
                         classes: Sequence[str] = ('background', 'lesion'),
                         splits: bool = True, test_cases: int = 0,
                         file_ending: str = '.nii.gz',
                         case_spacings: Optional[Sequence[Sequence[float]]] = None) -> Path:
    """Write ``cases`` training cases (``case_000`` ...) as nnU-Net v2 raw data; returns ``root``.

    Args:
        splits: also write ``splits_final.json`` with the last case as validation.
        test_cases: unlabelled-but-scored cases in imagesTs / labelsTs.
        file_ending: '.nii.gz' (written with nibabel) or a SimpleITK format ('.nrrd', '.mha').
        case_spacings: one spacing per training case (cycled), instead of ``spacing`` for all.
    """
    import nibabel as nib

    from tasks.common.volume_io import write_volume

    def save(array, path, affine):
        if file_ending == '.nii.gz':
            nib.save(nib.Nifti1Image(array, affine), str(path))
        else:
            write_volume(array, affine, path)

    root = Path(root)
    ct = [name.lower() == 'ct' for name in channel_names]
    for folder, count, prefix in (('Tr', cases, 'case'), ('Ts', test_cases, 'test')):
        for index in range(count):
            name = f'{prefix}_{index:03d}'
            affine = oblique_affine(case_spacings[index % len(case_spacings)]
                                    if case_spacings and folder == 'Tr' else spacing)
            image, label = synthetic_case(shape, seed=index + (100 if folder == 'Ts' else 0),
                                          channels=len(channel_names), ct=any(ct))
            for channel in range(len(channel_names)):
                path = root / f'images{folder}' / f'{name}_{channel:04d}{file_ending}'
                path.parent.mkdir(parents=True, exist_ok=True)
                save(image[..., channel], path, affine)
            path = root / f'labels{folder}' / f'{name}{file_ending}'
            path.parent.mkdir(parents=True, exist_ok=True)
            save(label, path, affine)
    (root / 'dataset.json').write_text(json.dumps(dict(
        channel_names={str(i): name for i, name in enumerate(channel_names)},
        labels={name: index for index, name in enumerate(classes)},
        numTraining=cases, file_ending=file_ending, name='synthetic')))
    if splits:
        names = [f'case_{index:03d}' for index in range(cases)]
        (root / 'splits_final.json').write_text(json.dumps([dict(train=names[:-1],
                                                                  val=names[-1:])]))
    return root
