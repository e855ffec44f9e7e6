"""tasks.common.augment: pipeline steps from config dicts, and their errors."""
import pytest

from tasks.common.augment import build_transform


def test_unknown_pipeline_step_is_named():
    with pytest.raises(ValueError, match='HorizontalFlipp'):
        build_transform(dict(type='HorizontalFlipp'))
