"""Building layers: conv-norm-act, padding modes, SE, scSE, drop path, norm/act factories."""
from .attention import (BLOCK_ATTENTION, SCSE, ChannelSE, SpatialSE, SqueezeExcite,
                        create_block_attention)
from .conv import (PADDING_MODES, Conv2dSame, ConvNormAct, DepthwiseConv2d, DepthwiseConv2dSame,
                   create_conv2d, replan_conv2d,
                   same_padding)
from .drop_path import DropPath
from .small_conv import PointwiseConv2d, set_small_conv, small_conv2d, small_conv_enabled
from .norm_act import (ACT_LAYERS, NORM_LAYERS, ActFactory, NormFactory, is_norm,
                       resolve_act_layer, resolve_norm_layer)

__all__ = ['BLOCK_ATTENTION', 'SCSE', 'ChannelSE', 'SpatialSE', 'SqueezeExcite',
           'create_block_attention', 'PADDING_MODES', 'Conv2dSame', 'ConvNormAct', 'DepthwiseConv2d',
           'DepthwiseConv2dSame', 'create_conv2d',
           'replan_conv2d',
           'same_padding', 'DropPath', 'ACT_LAYERS', 'NORM_LAYERS', 'ActFactory', 'NormFactory',
           'is_norm', 'resolve_act_layer', 'resolve_norm_layer', 'PointwiseConv2d', 'set_small_conv',
           'small_conv2d', 'small_conv_enabled']
