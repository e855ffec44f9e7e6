"""Crash-safe file writing: a kill during a save never leaves a truncated file at the target."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

__all__ = ['atomic_path']


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, fsync it and rename it
    over ``path`` (atomic on POSIX). On failure the temporary file is removed and ``path`` keeps
    its previous content.

    The temporary name keeps the suffix, since some writers (torch.export) check it, and is
    unique (``mkstemp``), so two writers of one file (threads, nested saves) never share it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f'.{path.stem}.tmp-', suffix=path.suffix,
                                    dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    tmp.unlink()  # only the unique name is kept: a writer that writes nothing must fail below
    try:
        yield tmp
        with open(tmp, 'rb') as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
