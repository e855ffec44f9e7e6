"""EfficientNet B0-B7 as exact, fast, multi-scale backbones for dense prediction."""
from .backbone import EfficientNet
from .adapters.smp import EffNetEncoder, create_smp_model  # registers smp encoders effnet-b0 ... b7
from .adapters.torchvision import EffNetFPN, efficientnet_fpn_backbone  # torchvision detectors
from .bifpn import BiFPN, EffNetBiFPN
from .classifier import EfficientNetClassifier
from .compiling import compile_model
from .efficientdet import (EFFICIENTDET_CONFIGS, EfficientDetConfig, EfficientDetHeadNets,
                           EfficientDetNet, create_efficientdet, flatten_anchor_outputs,
                           list_efficientdets)
from .factory import build_backbone, create_backbone, list_backbones
from .features import FeatureInfo, TapInfo
from .registry import MODELS
from .spec import ARCHS, SCALING, build_plan
from .transplanting import TransplantError, TransplantReport, transplant
from .weights import load_pretrained, save_backbone

__version__ = '0.1.0'

__all__ = ['EfficientNet', 'TapInfo', 'FeatureInfo', 'EfficientNetClassifier', 'compile_model', 'create_backbone',
           'build_backbone', 'list_backbones', 'EffNetEncoder', 'create_smp_model', 'MODELS', 'ARCHS', 'SCALING', 'build_plan',
           'load_pretrained', 'save_backbone', 'transplant', 'TransplantReport',
           'TransplantError', 'EffNetFPN', 'efficientnet_fpn_backbone', 'BiFPN', 'EffNetBiFPN',
           'EFFICIENTDET_CONFIGS', 'EfficientDetConfig', 'EfficientDetHeadNets', 'EfficientDetNet',
           'create_efficientdet', 'flatten_anchor_outputs', 'list_efficientdets', '__version__']
