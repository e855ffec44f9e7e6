"""Pretrained weights: exact import of torchvision and timm EfficientNet checkpoints, and our own format.

The path of a checkpoint through this package:

    file | state dict | module | hub name | URL     read.read_checkpoint (files, hub)
      -> unwrap ('state_dict'/'model' wrappers, 'module.' prefixes)          files.unwrap
      -> recognise the key layout: torchvision, timm (plain or tf_), ours    sources.settle_source
      -> rename keys to ours by module name, per block kind                  keys.to_ours
      -> tell the variant from tensor shapes                                 keys.variants_of
      -> adapt the stem to ``in_chans``                                      stem.adapt_stem_weight
      -> load what the model built, report the rest                          loading, report

timm's plain and ``tf_`` checkpoints share key names; only a name ('tf_efficientnet...' in a hub
name, URL or file path) or ``source='timm_tf'`` tells them apart, and that choice sets TF 'same'
padding and BN eps 1e-3 on the backbone. The builders (:func:`effnet_backbones.create_backbone`,
the registry) read a checkpoint once, take those settings from it (:func:`settings_of`), build
the model, then call :func:`load_pretrained`.
"""
from .checkpoint import Checkpoint, WeightsError
from .files import read_file
from .hub import HubWeights, fetch_hub_weights, parse_hub_name
from .keys import (LAYOUTS, KeyLayout, describe_shapes, from_ours, layout_name, recognise_layout,
                   to_ours, variant_text, variants_of)
from .loading import load_pretrained
from .own_format import FORMAT, save_backbone
from .read import (checkpoint_config, detect_variant, read_checkpoint, select_prefix, settings_of,
                   source_defaults)
from .report import LoadReport
from .sources import SOURCES, convert_state_dict, source_settings
from .stem import adapt_stem_weight

__all__ = [
    'SOURCES', 'FORMAT', 'WeightsError', 'LoadReport', 'Checkpoint', 'HubWeights', 'KeyLayout',
    'LAYOUTS', 'from_ours', 'layout_name', 'recognise_layout', 'describe_shapes', 'variant_text',
    'source_settings', 'settings_of', 'source_defaults', 'read_checkpoint',
    'read_file', 'parse_hub_name', 'fetch_hub_weights', 'to_ours', 'convert_state_dict',
    'variants_of', 'detect_variant', 'checkpoint_config', 'adapt_stem_weight', 'load_pretrained',
    'save_backbone', 'select_prefix',
]
