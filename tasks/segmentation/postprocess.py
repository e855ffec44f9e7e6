"""Post-processing of predicted class maps (nnU-Net's "remove all but the largest component").

Where a class is known to be one connected object (an organ, a single lesion), stray islands
of it elsewhere are false positives; keeping only its largest connected component removes them.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

__all__ = ['keep_largest_component', 'largest_component_classes']


def keep_largest_component(labels: np.ndarray, classes: Optional[Sequence[int]] = None,
                           connectivity: int = 1) -> np.ndarray:
    """A copy of a 2D or 3D class map in which each foreground class keeps only its largest
    connected component; its other components become background 0.

    Ties between equally large components keep the one met first in C order.

    Args:
        labels: class index per pixel or voxel, ``(H, W)`` or ``(D, H, W)``; not modified.
        classes: the classes to clean; default every non-zero class present.
        connectivity: which neighbours connect, as ``scipy.ndimage.generate_binary_structure``:
            1 = sharing a face (4-neighbourhood in 2D, 6 in 3D) ... ``ndim`` = any touching
            corner (8 in 2D, 26 in 3D).
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f'labels must be a 2D or 3D class map, got shape {labels.shape}')
    if isinstance(connectivity, bool) or not isinstance(connectivity, (int, np.integer)) \
            or not 1 <= connectivity <= labels.ndim:
        raise ValueError(f'connectivity must be an int in 1..{labels.ndim} for a '
                         f'{labels.ndim}D map, got {connectivity!r}')
    if classes is None:
        classes = [int(value) for value in np.unique(labels) if value != 0]
    elif 0 in list(classes):
        raise ValueError('classes lists 0, the background, which has no components to keep')
    structure = ndimage.generate_binary_structure(labels.ndim, connectivity)
    cleaned = labels.copy()
    for value in classes:
        mask = labels == value
        components, count = ndimage.label(mask, structure)
        if count <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0  # label 0 is everything outside the class
        cleaned[mask & (components != sizes.argmax())] = 0
    return cleaned


def largest_component_classes(option: object, name: str = 'largest_component'
                              ) -> Optional[Sequence[int]]:
    """A ``largest_component`` setting as the ``classes`` of :func:`keep_largest_component`:
    ``True`` -> every foreground class (``None``), a list of class indices -> those (a structure
    drawn in two parts, such as both hemispheres' white matter, should be left out); ``False`` ->
    ``[]`` (nothing to clean)."""
    if option is True:
        return None
    if option is False or option is None:
        return []
    values = list(option) if isinstance(option, (list, tuple)) else None
    if values is None or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 and v > 0 for v in values):
        raise ValueError(f'{name} must be True, False or a list of foreground class indices '
                         f'(> 0), got {option!r}')
    return [int(v) for v in values]
