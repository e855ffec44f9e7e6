"""The full ImageNet classifier built from the same spec (stem, all stages, 1x1 head, pooling, FC)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .body import ActSpec, NormSpec, build_body, default_norm_args, init_weights
from .layers import ConvNormAct, resolve_act_layer, resolve_norm_layer
from .spec import build_plan, check_arch

__all__ = ['EfficientNetClassifier']


class EfficientNetClassifier(nn.Module):
    """EfficientNet B0-B7 image classifier, parameter-for-parameter the reference network.

    Args:
        arch: 'b0' ... 'b7'.
        num_classes: classifier outputs (1000 for ImageNet).
        dropout: dropout before the classifier; default is the variant's (0.2 ... 0.5).
        drop_path_rate: stochastic depth of the deepest block (torchvision uses 0.2).
        in_chans, norm_layer, norm_eps, norm_momentum, act_layer, padding: as for the backbone.
    """

    def __init__(self, arch: str = 'b0', num_classes: int = 1000, dropout: Optional[float] = None,
                 drop_path_rate: float = 0.2, in_chans: int = 3, norm_layer: NormSpec = 'bn',
                 norm_eps: Optional[float] = None, norm_momentum: Optional[float] = None,
                 act_layer: ActSpec = 'swish', padding: str = 'symmetric') -> None:
        super().__init__()
        self.arch = check_arch(arch)
        self.plan = build_plan(self.arch, drop_path_rate=drop_path_rate)
        default_eps, default_momentum = default_norm_args(self.arch)
        norm_factory = resolve_norm_layer(norm_layer, default_eps if norm_eps is None else norm_eps,
                                          default_momentum if norm_momentum is None else norm_momentum)
        act_factory = resolve_act_layer(act_layer)
        self.stem, self.stages = build_body(self.plan, len(self.plan.stages), in_chans,
                                            norm_factory, act_factory, padding)
        self.head = ConvNormAct(self.plan.stage_channels[-1], self.plan.head_channels, 1,
                                norm_factory, act_factory)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(self.plan.scaling.dropout if dropout is None else dropout)
        self.classifier = nn.Linear(self.plan.head_channels, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the head convolution (stride 32)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        x = self.pool(self.forward_features(x)).flatten(1)
        return self.classifier(self.dropout(x))
