"""Checks of the backbone's constructor options that need more than one line; each error names the
value and lists the valid ones."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

from .spec import TAP_STAGES

__all__ = ['NUM_LEVELS', 'WITH_CP_MODES', 'check_out_indices', 'check_scse', 'check_with_cp']

NUM_LEVELS = len(TAP_STAGES)
WITH_CP_MODES = ('stage', 'block')


def check_out_indices(out_indices: Sequence[int]) -> Tuple[int, ...]:
    """``out_indices`` as a tuple of strictly increasing levels 0..4, or a clear error."""
    valid = f'levels 0..{NUM_LEVELS - 1} = strides 2, 4, 8, 16, 32'
    if isinstance(out_indices, int) or not isinstance(out_indices, Sequence):
        raise TypeError(f'out_indices must be a sequence of ints ({valid}), got {out_indices!r}')
    indices = tuple(out_indices)
    if not indices:
        raise ValueError(f'out_indices is empty; pick one or more of {valid}')
    for index in indices:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < NUM_LEVELS:
            raise ValueError(f'out_indices entry {index!r} is not valid; valid: {valid}')
    if list(indices) != sorted(set(indices)):
        raise ValueError(f'out_indices {indices!r} must be strictly increasing '
                         f'(shallow to deep, no repeats), e.g. (1, 2, 3, 4)')
    return indices


def check_scse(scse: Union[bool, Sequence[bool]], num_taps: int) -> Tuple[bool, ...]:
    """One scSE flag per tap, from a single bool or a sequence of them."""
    if isinstance(scse, bool):
        return (scse,) * num_taps
    if isinstance(scse, Sequence) and all(isinstance(flag, bool) for flag in scse):
        if len(scse) != num_taps:
            raise ValueError(f'scse has {len(scse)} flags but out_indices has {num_taps} taps; '
                             f'give one bool per tap or a single bool')
        return tuple(scse)
    raise TypeError(f'scse must be a bool or one bool per tap, got {scse!r}')


def check_with_cp(with_cp: Union[bool, str]) -> Optional[str]:
    """The checkpointing mode: None, 'stage' or 'block'."""
    if with_cp is False or with_cp is None:
        return None
    if with_cp is True:
        return 'stage'
    if with_cp in WITH_CP_MODES:
        return with_cp
    raise ValueError(f'with_cp must be False, True (= "stage") or one of {WITH_CP_MODES}, '
                     f'got {with_cp!r}')
