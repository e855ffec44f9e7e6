"""Window placement shared by the tasks: sliding-window prediction (segmentation) and tiling of
detection sets place windows of one size over an image the same way (nnU-Net's placement)."""
from __future__ import annotations

import math
import numbers
from typing import List, Sequence, Tuple, Union

__all__ = ['Window', 'is_int', 'as_window', 'check_overlap', 'window_starts', 'fitted_window',
           'window_slices']

Window = Union[int, Sequence[int]]


def is_int(value) -> bool:
    """True for an integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_window(window: Window, name: str = 'window') -> Tuple[int, int]:
    """``(h, w)`` from an int or a pair of positive ints.

    Args:
        window: one side for both axes, or ``(h, w)``.
        name: what the error message calls the value (e.g. ``'model.test_cfg.window'``).
    """
    if is_int(window):
        sides: Tuple = (window, window)
    elif isinstance(window, Sequence) and not isinstance(window, str):
        sides = tuple(window)
    else:
        sides = ()
    if len(sides) != 2 or not all(is_int(side) and side > 0 for side in sides):
        raise ValueError(f'{name} must be a positive int or a pair (h, w) of positive ints, '
                         f'got {window!r}')
    return int(sides[0]), int(sides[1])


def check_overlap(overlap: float, name: str = 'overlap') -> float:
    """``overlap`` as a float, or a ValueError naming it unless it lies in [0, 1).

    Args:
        overlap: fraction of a window shared with its neighbour.
        name: what the error message calls the value.
    """
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Real) \
            or not 0 <= overlap < 1:
        raise ValueError(f'{name} must be a number in [0, 1) (the fraction of a window its '
                         f'neighbour shares), got {overlap!r}')
    return float(overlap)


def window_starts(size: int, window: int, overlap: float) -> List[int]:
    """Window positions along one axis covering ``[0, size)``, as nnU-Net places them.

    The step is at most ``ceil(window * (1 - overlap))``; the first window starts at 0, the last
    at ``size - window``, and those between are spread evenly. A single 0 when
    ``window >= size``.

    Args:
        size: the axis' length.
        window: the window's side along it.
        overlap: the fraction of a window its neighbour shares, in [0, 1).
    """
    for name, value in (('size', size), ('window', window)):
        if not is_int(value) or value < 1:
            raise ValueError(f'{name} must be a positive int, got {value!r}')
    overlap = check_overlap(overlap)
    if window >= size:
        return [0]
    step = math.ceil(window * (1 - overlap))
    count = math.ceil((size - window) / step) + 1
    spacing = (size - window) / (count - 1)
    return [int(round(spacing * index)) for index in range(count)]


def fitted_window(size: Sequence[int], window: Window) -> Tuple[int, int]:
    """The window ``(h, w)``, shrunk to the image side along any axis where the image is smaller.

    Args:
        size: the image's ``(H, W)``.
        window: the window's ``(h, w)`` or one int.
    """
    sides = as_window(window)
    return min(sides[0], int(size[0])), min(sides[1], int(size[1]))


def window_slices(size: Sequence[int], window: Tuple[int, int],
                  overlap: float) -> List[Tuple[slice, slice]]:
    """Every window's ``(rows, columns)`` over an image of ``size``, row by row.

    Args:
        size: the image's ``(H, W)``.
        window: the window's ``(h, w)``, at most the image's sides (see :func:`fitted_window`).
        overlap: the fraction of a window its neighbour shares, in [0, 1).
    """
    rows = window_starts(int(size[0]), window[0], overlap)
    columns = window_starts(int(size[1]), window[1], overlap)
    return [(slice(y, y + window[0]), slice(x, x + window[1])) for y in rows for x in columns]
