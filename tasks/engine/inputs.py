"""Expanding command-line inputs (files, folders, glob patterns) into a list of image files."""
from __future__ import annotations

import glob
from pathlib import Path
from typing import List, Sequence

__all__ = ['expand_inputs']


def expand_inputs(inputs: Sequence[str], suffixes: Sequence[str]) -> List[Path]:
    """Files named, files with ``suffixes`` inside named folders, and glob matches, in order.

    Raises FileNotFoundError naming every input that matched nothing.
    """
    found: List[Path] = []
    missing: List[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir()
                             if p.is_file() and p.suffix.lower() in suffixes)
        elif path.is_file():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        if not matches:
            missing.append(item)
        found.extend(match for match in matches if match not in found)
    if missing:
        raise FileNotFoundError(f'no image found for input(s) {missing} (files, folders holding '
                                f'{", ".join(suffixes)} files, or glob patterns)')
    return found
