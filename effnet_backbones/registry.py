"""MMEngine registry of the ``effnet_backbones`` scope, and every library entry in it.

MMEngine resolves a scoped type ``'effnet_backbones.EfficientNet'`` by importing
``effnet_backbones.registry`` and looking for a child of its root ``MODELS`` with this scope, so a
config in any scope (mmdet's, mmseg's, the root) can build our models without importing us first.

``EfficientNet`` is registered as its builder, :func:`effnet_backbones.factory.build_backbone`, so
that ``pretrained`` and ``init_cfg=dict(type='Pretrained', ...)`` in a config are loaded after the
model is built with the weights' settings, whichever scope builds it. The task packages
(``tasks/*/registry.py``) add their models, datasets, metrics and hooks to the same scope.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry, build_model_from_cfg

from .adapters.torchvision import EffNetFPN
from .bifpn import EffNetBiFPN
from .classifier import EfficientNetClassifier
from .factory import build_backbone

__all__ = ['MODELS', 'DATASETS', 'METRICS', 'HOOKS', 'SCOPE']

SCOPE = 'effnet_backbones'


def _build_in_our_scope(cfg, registry, default_args=None):
    """Build unscoped types from our registry in our scope, whatever scope is current.

    Without this, ``MODELS.build(dict(type='EfficientNet'))`` fails while another scope (an mmdet
    or MMEngine Runner's) is the default: MMEngine would look the name up in that scope.
    """
    if isinstance(cfg, dict) and '_scope_' not in cfg and isinstance(cfg.get('type'), str) \
            and '.' not in cfg['type']:
        cfg = cfg.copy()
        cfg['_scope_'] = SCOPE
    return build_model_from_cfg(cfg, registry, default_args)


MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE, build_func=_build_in_our_scope)
MODELS.register_module(name='EfficientNet', module=build_backbone)
MODELS.register_module(module=EfficientNetClassifier)
MODELS.register_module(module=EffNetFPN)
MODELS.register_module(module=EffNetBiFPN)

# filled by the task packages (tasks/*), which register their datasets, metrics and hooks here
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope=SCOPE)
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope=SCOPE)
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope=SCOPE)
