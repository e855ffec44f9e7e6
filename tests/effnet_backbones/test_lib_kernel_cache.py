"""set_cpu_kernel_cache: the variables oneDNN and PyTorch read for their kernel caches."""
import pytest

from effnet_backbones.kernel_cache import (DEFAULT_KERNEL_CACHE_CAPACITY, KERNEL_CACHE_VARIABLES,
                                           set_cpu_kernel_cache)


@pytest.fixture
def clean_environ(monkeypatch):
    for name in KERNEL_CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_both_caches_get_the_capacity(clean_environ):
    import os

    setting = set_cpu_kernel_cache()
    assert DEFAULT_KERNEL_CACHE_CAPACITY == 4096
    assert {name: os.environ[name] for name in KERNEL_CACHE_VARIABLES} == {
        'ONEDNN_PRIMITIVE_CACHE_CAPACITY': '4096', 'LRU_CACHE_CAPACITY': '4096'}
    assert setting.changed == {'ONEDNN_PRIMITIVE_CACHE_CAPACITY': '4096',
                               'LRU_CACHE_CAPACITY': '4096'} and setting.kept == {}
    assert setting.describe() == ('CPU kernel cache: 4096 entries (LRU_CACHE_CAPACITY, '
                                  'ONEDNN_PRIMITIVE_CACHE_CAPACITY)')


def test_a_users_variable_is_kept(clean_environ):
    import os

    clean_environ.setenv('ONEDNN_PRIMITIVE_CACHE_CAPACITY', '512')
    setting = set_cpu_kernel_cache(2048)
    assert os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'] == '512'
    assert os.environ['LRU_CACHE_CAPACITY'] == '2048'
    assert setting.kept == {'ONEDNN_PRIMITIVE_CACHE_CAPACITY': '512'}
    assert setting.describe() == ('CPU kernel cache: 2048 entries (LRU_CACHE_CAPACITY); '
                                  'kept ONEDNN_PRIMITIVE_CACHE_CAPACITY=512')


@pytest.mark.parametrize('capacity', [0, -1, True, 1.5, '4096', None])
def test_bad_capacities_are_named(clean_environ, capacity):
    import os

    with pytest.raises(ValueError, match=r'cpu_kernel_cache must be a positive int .*got '
                                         + repr(capacity).replace('.', r'\.')):
        set_cpu_kernel_cache(capacity)
    assert not any(name in os.environ for name in KERNEL_CACHE_VARIABLES)
