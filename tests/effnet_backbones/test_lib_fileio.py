"""effnet_backbones.fileio.atomic_path: the target holds the old file or the whole new one, never
a part, and no temporary file stays behind."""
import os

import pytest
import torch

import effnet_backbones.fileio as fileio
from effnet_backbones.fileio import atomic_path


class WriterFailed(RuntimeError):
    """Raised by a test writer half-way through."""


def files_in(directory):
    """Names of all entries of ``directory``, hidden ones included."""
    return sorted(os.listdir(directory))


def test_success_replaces_the_target_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / 'model.pth'
    target.write_bytes(b'old')
    with atomic_path(target) as tmp:
        assert tmp != target and tmp.parent == target.parent  # same filesystem: atomic rename
        assert tmp.suffix == '.pth' and tmp.name.startswith('.')
        tmp.write_bytes(b'new content')
        assert target.read_bytes() == b'old'  # untouched until the block ends
    assert target.read_bytes() == b'new content'
    assert files_in(tmp_path) == ['model.pth']


@pytest.mark.parametrize('error', [WriterFailed('disk full'), KeyboardInterrupt()])
def test_a_failing_writer_keeps_the_old_content_and_removes_its_partial_file(tmp_path, error):
    target = tmp_path / 'model.pth'
    target.write_bytes(b'old')
    with pytest.raises(type(error)):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b'half')
            raise error
    assert target.read_bytes() == b'old'
    assert files_in(tmp_path) == ['model.pth']


def test_a_failing_first_write_leaves_nothing(tmp_path):
    target = tmp_path / 'new.safetensors'
    with pytest.raises(WriterFailed):
        with atomic_path(str(target)) as tmp:  # str paths work too
            tmp.write_bytes(b'half')
            raise WriterFailed
    assert files_in(tmp_path) == []


def test_a_writer_that_writes_nothing_fails_and_keeps_the_old_file(tmp_path):
    target = tmp_path / 'model.pth'
    target.write_bytes(b'old')
    with pytest.raises(FileNotFoundError):
        with atomic_path(target):
            pass
    assert target.read_bytes() == b'old' and files_in(tmp_path) == ['model.pth']


def test_missing_parent_directories_are_created(tmp_path):
    target = tmp_path / 'work' / 'run1' / 'last.pth'
    with atomic_path(target) as tmp:
        torch.save({'step': 3}, tmp)
    assert torch.load(target, weights_only=True) == {'step': 3}
    assert files_in(target.parent) == ['last.pth']


def test_the_file_is_flushed_to_disk_before_it_is_renamed(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(fileio.os, 'fsync', lambda fd: (events.append('fsync'), real_fsync(fd)))
    monkeypatch.setattr(fileio.os, 'replace',
                        lambda a, b: (events.append('replace'), real_replace(a, b)))
    target = tmp_path / 'model.pth'
    with atomic_path(target) as tmp:
        tmp.write_bytes(b'data')
    # the file's data first, then the rename, then (where possible) the directory entry
    assert events[:2] == ['fsync', 'replace']
    assert target.read_bytes() == b'data'


def test_two_writers_of_one_file_get_their_own_temporary_files(tmp_path):
    target = tmp_path / 'model.pth'
    with atomic_path(target) as outer:
        outer.write_bytes(b'outer')
        with atomic_path(target) as inner:
            assert inner != outer
            inner.write_bytes(b'inner')
        assert target.read_bytes() == b'inner'
    assert target.read_bytes() == b'outer'  # the later rename wins, nothing is lost on the way
    assert files_in(tmp_path) == ['model.pth']
