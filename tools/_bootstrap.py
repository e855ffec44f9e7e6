"""Process set-up every tool starts with: ``import _bootstrap`` comes before any other import.

* The repository root goes on ``sys.path``, so ``tasks``, ``benchmarks`` (never installed) and the
  configs' ``custom_imports`` resolve from a checkout whether or not the package is installed.
  No tool edits ``sys.path`` itself.
* OpenMP threads wait passively (unless ``OMP_WAIT_POLICY`` is already set). PyTorch's OpenMP
  threads otherwise spin while waiting; when the CPU is shared (DataLoader workers, other jobs)
  spinning threads starve the working ones, and on a busy 2-core machine a B4 training step took
  40-60 s instead of 1.5-3 s. libgomp reads the variable when torch loads, hence the early import.
"""
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
