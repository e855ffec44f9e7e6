"""Checkpoints that survive a kill at any moment, and resume that finds the last good one.

MMEngine 0.10 writes checkpoints in place (``open(path, 'wb')``), deletes the oldest checkpoint
(and the previous best) *before* saving the new one, and writes the ``last_checkpoint`` pointer in
place. A kill during a save can therefore leave a truncated file, no checkpoint at all
(``max_keep_ckpts=1``) or a pointer to a file that is gone. Here:

- :class:`AtomicLocalBackend` writes every local file through a temporary file, fsync and rename;
- :class:`SafeCheckpointHook` removes outdated checkpoints only after the new one is on disk;
- :func:`find_resumable_checkpoint` resumes from the newest checkpoint that is complete, whatever
  ``last_checkpoint`` says.
"""
from __future__ import annotations

import contextlib
import logging
import os.path as osp
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator, List, Optional, Union

from mmengine.fileio import io as mmengine_io
from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from effnet_backbones.fileio import atomic_path

__all__ = ['AtomicLocalBackend', 'install_atomic_file_backend', 'SafeCheckpointHook',
           'is_complete_checkpoint', 'find_resumable_checkpoint']

_ITER_CKPT = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend, writing through a temporary file and an atomic rename."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        with atomic_path(filepath) as tmp:
            with open(tmp, 'wb') as out:
                out.write(obj)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        with atomic_path(filepath) as tmp:
            with open(tmp, 'w', encoding=encoding) as out:
                out.write(obj)


def install_atomic_file_backend() -> None:
    """Make MMEngine write local files (checkpoints included) atomically."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    # get_file_backend caches instances: drop plain local ones made before the registration
    for key, backend in list(mmengine_io.backend_instances.items()):
        if type(backend) is LocalBackend:
            del mmengine_io.backend_instances[key]


class _DeferredRemoval:
    """A file-backend proxy that queues ``remove``/``rmtree`` instead of running them."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.pending: List[tuple] = []

    def remove(self, path: str) -> None:
        self.pending.append(('remove', path))

    def rmtree(self, path: str) -> None:
        self.pending.append(('rmtree', path))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never deletes a checkpoint before its successor is fully written.

    It also rewrites the ``last_checkpoint`` pointer atomically. Same arguments as MMEngine's hook.
    """

    @contextlib.contextmanager
    def _removals_after_save(self, runner) -> Iterator[None]:
        backend = self.file_backend
        deferred = _DeferredRemoval(backend)
        self.file_backend = deferred
        try:
            yield
        finally:
            self.file_backend = backend
        for operation, path in deferred.pending:  # only reached when the save succeeded
            if path not in (getattr(self, 'last_ckpt', None), getattr(self, 'best_ckpt_path', None)):
                getattr(backend, operation)(path)
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        if getattr(self, 'last_ckpt', None) and osp.isfile(pointer):
            AtomicLocalBackend().put_text(self.last_ckpt, pointer)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        with self._removals_after_save(runner):
            super()._save_checkpoint_with_step(runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._removals_after_save(runner):
            super()._save_best_checkpoint(runner, metrics)


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a readable torch zip archive (a truncated save fails the CRC check)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint to resume from: ``last_checkpoint``'s target if complete, else the newest
    complete ``iter_N.pth`` / ``epoch_N.pth`` in ``work_dir``; None if there is none."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    candidates: List[str] = []
    if osp.isfile(pointer):
        with open(pointer) as handle:
            named = handle.read().strip()
        if named:
            candidates.append(named if osp.isabs(named) else osp.join(work_dir, osp.basename(named)))
    if osp.isdir(work_dir):
        numbered = [(int(match.group(1)), name) for name in Path(work_dir).iterdir()
                    for match in [_ITER_CKPT.match(name.name)] if match]
        candidates += [str(path) for _, path in sorted(numbered, reverse=True)]
    for candidate in candidates:
        if osp.isfile(candidate) and is_complete_checkpoint(candidate):
            if candidates and candidate != candidates[0]:
                print_log(f'resume: {candidates[0]} is missing or incomplete; resuming from '
                          f'{candidate}', logger='current', level=logging.WARNING)
            return candidate
    return None
