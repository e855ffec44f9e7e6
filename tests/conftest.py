import os
import sys

# OpenMP threads otherwise spin while waiting and starve each other on a busy 2-core machine
# (10-60 s instead of ~1.4 s per B4 step); libgomp reads this when torch loads, so set it first.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import pytest  # noqa: E402
import torch  # noqa: E402

# the checkout (tasks, benchmarks: importable without installing), tools/ (scripts, not a package:
# tests call their main()) and tests/ itself (the shared helpers seg_data, det_data, tool_loader)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (the root goes first: tests/effnet_backbones and tests/tasks must never shadow the packages)
for folder in (os.path.dirname(os.path.abspath(__file__)), os.path.join(ROOT, 'tools'), ROOT):
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)

# under pytest-xdist each worker takes one core's share: two workers with two threads each would
# fight over the same two cores
_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _scope_restorer():
    """A Runner leaves its scope current; restore it so test order cannot change registry lookups."""
    from mmengine.registry import DefaultScope
    saved = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


# per test, and per module for the Runners that module-scoped fixtures start
_restore_mmengine_default_scope = pytest.fixture(autouse=True)(_scope_restorer)
_restore_mmengine_default_scope_per_module = pytest.fixture(autouse=True, scope='module')(_scope_restorer)


@pytest.fixture(scope='module')
def one_thread():
    """One torch thread for a module of tiny-tensor tests: a second OpenMP thread gains nothing
    there and, on a shared machine, waiting for it made steps 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fresh_dynamo():
    """TorchDynamo's caches emptied before and after a test: compiled graphs are shared between
    instances of a module class, so one test's compilations would serve the next."""
    import torch._dynamo as dynamo
    dynamo.reset()
    yield
    dynamo.reset()
