import subprocess
import sys
import textwrap

import pytest
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope, Registry

import effnet_backbones
from effnet_backbones import EfficientNet, EfficientNetClassifier

CFG = dict(type='effnet_backbones.EfficientNet', arch='b4', out_indices=(1, 2, 3, 4), scse=True)


def test_child_of_mmengine_root_with_our_scope():
    assert effnet_backbones.MODELS.parent is ROOT_MODELS
    assert effnet_backbones.MODELS.scope == 'effnet_backbones'
    assert ROOT_MODELS._children['effnet_backbones'] is effnet_backbones.MODELS


def test_build_from_root_registry():
    model = ROOT_MODELS.build(CFG)
    assert isinstance(model, EfficientNet) and model.arch == 'b4'
    assert model.out_channels == [32, 56, 160, 448] and all(model.scse)


def test_build_from_our_registry_with_unscoped_type():
    model = effnet_backbones.MODELS.build(dict(type='EfficientNet', arch='b0', out_indices=(2, 3)))
    assert model.out_channels == [40, 112]
    assert isinstance(effnet_backbones.MODELS.build(dict(type='EfficientNetClassifier', arch='b0',
                                                         num_classes=3)), EfficientNetClassifier)


def test_unscoped_build_from_our_registry_while_another_scope_is_current():
    with DefaultScope.overwrite_default_scope('mmengine'):
        model = effnet_backbones.MODELS.build(dict(type='EfficientNet', arch='b0', out_indices=(4,)))
    assert model.out_channels == [320]


def test_build_from_a_sibling_scope_like_mmdet():
    sibling = Registry('model', parent=ROOT_MODELS, scope='fake_mmdet_scope')
    with DefaultScope.overwrite_default_scope('fake_mmdet_scope'):
        model = sibling.build(dict(CFG, arch='b0'))
    assert isinstance(model, EfficientNet) and model.arch == 'b0'


def test_registry_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="'b9'"):
        ROOT_MODELS.build(dict(CFG, arch='b9'))


def _run_fresh(code: str, tmp_path) -> str:
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    # the last line is ours; mmengine's logger may print warnings about the fake sibling scope
    return result.stdout.strip().splitlines()[-1]


def test_build_without_any_prior_import(tmp_path):
    out = _run_fresh("""
        import sys
        from mmengine.registry import MODELS
        assert 'effnet_backbones' not in sys.modules
        model = MODELS.build(dict(type='effnet_backbones.EfficientNet', arch='b0', scse=True))
        print(type(model).__module__, model.out_channels)
    """, tmp_path)
    assert out == 'effnet_backbones.backbone [24, 40, 112, 320]'


def test_build_with_custom_imports_in_a_config_file(tmp_path):
    (tmp_path / 'cfg.py').write_text(textwrap.dedent("""
        custom_imports = dict(imports=['effnet_backbones'], allow_failed_imports=False)
        model = dict(type='effnet_backbones.EfficientNet', arch='b1', out_indices=(2, 3, 4))
    """))
    out = _run_fresh("""
        from mmengine.config import Config
        from mmengine.registry import MODELS, Registry, DefaultScope
        cfg = Config.fromfile('cfg.py')
        sibling = Registry('model', parent=MODELS, scope='fake_mmseg_scope')
        with DefaultScope.overwrite_default_scope('fake_mmseg_scope'):
            model = sibling.build(cfg.model)
        print(model.arch, model.out_channels)
    """, tmp_path)
    assert out == 'b1 [40, 112, 320]'
