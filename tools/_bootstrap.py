"""Process set-up every tool starts with: ``import _bootstrap`` comes before any other import.

* The repository root goes on ``sys.path``, so ``tasks``, ``benchmarks`` (never installed) and the
  configs' ``custom_imports`` resolve from a checkout whether or not the package is installed.
  No tool edits ``sys.path`` itself.
* OpenMP threads spin briefly, then sleep, while they wait between parallel regions
  (``GOMP_SPINCOUNT=10000``, unless ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is already set).
  libgomp's default spin (300,000) lets waiting threads starve the working ones when the CPU is
  shared (a B4 step took 40-60 s instead of 1.5-3 s on a busy 2-core machine); waiting passively
  (``OMP_WAIT_POLICY=PASSIVE``, this module's earlier setting) avoids that but puts every
  thread to sleep between the thousands of small kernels of a step: on an idle 2-core machine the
  EfficientDet-D0 demo step took 874 ms passive, 261 ms with this spin count and 218 ms with
  libgomp's default (docs/benchmarks.md, "OpenMP waiting"). libgomp reads the variables when
  torch loads, hence the early import.
"""
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

if 'OMP_WAIT_POLICY' not in os.environ:
    os.environ.setdefault('GOMP_SPINCOUNT', '10000')
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
