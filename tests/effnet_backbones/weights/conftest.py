"""The ``reference`` fixture: one reference model per (source, variant), b0..b7."""
import pytest

from reference import ARCHS
from weight_refs import SOURCES, Reference, make_reference


@pytest.fixture(scope='module', params=[(s, a) for a in ARCHS for s in SOURCES],
                ids=lambda p: f'{p[1]}-{p[0]}')
def reference(request) -> Reference:
    # module scope + params: pytest groups the tests by reference, one model alive at a time
    return make_reference(*request.param)
