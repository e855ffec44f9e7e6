"""The multi-scale EfficientNet backbone: stem, stages up to the deepest tap, optional scSE taps."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from .blocks import ResNetDShortcut
from .body import ActSpec, NormSpec, build_body, default_norm_args, init_weights, zero_init_residual_
from .features import FeatureInfo, TapInfo
from .layers import PADDING_MODES, SCSE, is_norm, replan_conv2d, resolve_act_layer, resolve_norm_layer
from .layers.checkpoint import checkpoint_module
from .options import NUM_LEVELS, check_out_indices, check_scse, check_with_cp
from .spec import build_plan, check_arch

__all__ = ['EfficientNet', 'MIN_INPUT_SIZE', 'NUM_LEVELS']

MIN_INPUT_SIZE = 32


class EfficientNet(nn.Module):
    """EfficientNet B0-B7 feature extractor returning taps at strides 2/4/8/16/32.

    Only the stem and the stages up to the deepest requested tap are built, so every parameter
    gets a gradient (DDP needs no ``find_unused_parameters``).

    Args:
        arch: 'b0' ... 'b7' (or 'efficientnet_b4').
        out_indices: feature levels to return, 0..4 = strides 2, 4, 8, 16, 32, shallow to deep.
        scse: scSE attention on the taps; one bool for all or one per tap.
        scse_reduction: channel bottleneck ratio of the scSE channel gate.
        in_chans: input channels (1 for grayscale, 4+ for multispectral images).
        drop_path_rate: stochastic depth of the deepest block, ramped linearly from 0.
        frozen_stages: -1 freezes nothing, 0 the stem, k the stem and stages 0..k-1 of the 7
            (parameters get no gradient, norms stay in eval mode).
        norm_eval: keep every norm layer in eval mode while training (small-batch fine-tuning).
        norm_layer: 'bn', 'syncbn', 'gn', 'frozenbn', an mmcv-style dict or a callable.
        norm_eps: BN epsilon; default is torchvision's for the arch (1e-5 b0-b4, 1e-3 b5-b7).
        norm_momentum: BN momentum; default is torchvision's (0.1 b0-b4, 0.01 b5-b7).
        act_layer: 'swish', 'relu6', 'hardswish', 'relu' or a callable.
        padding: 'symmetric' (torchvision, timm) or 'same' (TF ports: timm ``tf_efficientnet_*``).
        output_stride: 32, 16 or 8; deeper strides become dilations.
        with_cp: activation checkpointing, False, True/'stage' (per stage) or 'block'.
        memory_efficient: save fewer activations in training without recomputing convolutions
            (fused norm + activation, fused SE gate + projection); same outputs and gradients.
        block_attention: attention inside each MBConv: 'se' (the paper's), 'cse', 'sse',
            'scse' or None (no attention, as in EfficientNet-Lite).
        se_ratio: SE width relative to each block's input channels; None keeps the table's 0.25.
        shortcut: None (the paper's) or 'resnet_d': the blocks that change stride or width get
            an avg-pool + 1x1 conv + BN shortcut, so every block has a residual path.
        zero_init_residual: start the last BN scale of every residual branch at 0, so each
            residual block starts as its shortcut.
        tap_dropout: channel dropout (``nn.Dropout2d``) on every returned tap while training: the
            dropout-only alternative to ``drop_path_rate``.

    Pretrained weights are loaded by the builders, :func:`effnet_backbones.create_backbone` and the
    registry entry ``type='effnet_backbones.EfficientNet'`` (which also take ``pretrained``,
    ``source`` and MMEngine's ``init_cfg``): they pick the padding and BN settings the weights were
    made with, build this class, then load.
    """

    # descriptions, not computation: TorchScript need not compile them
    __jit_unused_properties__ = ['out_channels', 'strides']

    def __init__(self, arch: str = 'b0', out_indices: Sequence[int] = (1, 2, 3, 4),
                 scse: Union[bool, Sequence[bool]] = False, scse_reduction: int = 16,
                 in_chans: int = 3, drop_path_rate: float = 0.0, frozen_stages: int = -1,
                 norm_eval: bool = False, norm_layer: NormSpec = 'bn',
                 norm_eps: Optional[float] = None, norm_momentum: Optional[float] = None,
                 act_layer: ActSpec = 'swish', padding: str = 'symmetric',
                 output_stride: int = 32, with_cp: Union[bool, str] = False,
                 memory_efficient: bool = False, block_attention: Optional[str] = 'se',
                 se_ratio: Optional[float] = None, shortcut: Optional[str] = None,
                 zero_init_residual: bool = False, tap_dropout: float = 0.0) -> None:
        super().__init__()
        self.arch = check_arch(arch)
        self.out_indices = check_out_indices(out_indices)
        if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
            raise ValueError(f'in_chans must be a positive int, got {in_chans!r}')
        if padding not in PADDING_MODES:
            raise ValueError(f'padding must be one of {PADDING_MODES}, got {padding!r}')
        self.in_chans = in_chans
        self.padding = padding
        self.norm_eval = bool(norm_eval)
        self.with_cp = check_with_cp(with_cp)
        self.memory_efficient = bool(memory_efficient)
        default_eps, default_momentum = default_norm_args(self.arch)
        self.norm_eps = default_eps if norm_eps is None else norm_eps
        self.norm_momentum = default_momentum if norm_momentum is None else norm_momentum

        self.plan = build_plan(self.arch, drop_path_rate=drop_path_rate,
                               output_stride=output_stride, se_ratio=se_ratio)
        self.output_stride = output_stride
        tap_stages = self.plan.tap_stages
        num_stages = tap_stages[self.out_indices[-1]] + 1
        self.stem, self.stages = build_body(
            self.plan, num_stages, in_chans, resolve_norm_layer(norm_layer, self.norm_eps,
                                                                self.norm_momentum),
            resolve_act_layer(act_layer), padding, self.memory_efficient, block_attention,
            shortcut)
        self.zero_init_residual = bool(zero_init_residual)
        if not isinstance(tap_dropout, (int, float)) or isinstance(tap_dropout, bool) \
                or not 0.0 <= tap_dropout < 1.0:
            raise ValueError(f'tap_dropout must be in [0, 1), got {tap_dropout!r}')
        self.tap_dropout = nn.Dropout2d(tap_dropout) if tap_dropout > 0 else nn.Identity()

        scse_flags = check_scse(scse, len(self.out_indices))
        if not isinstance(scse_reduction, int) or isinstance(scse_reduction, bool) or scse_reduction < 1:
            raise ValueError(f'scse_reduction must be a positive int, got {scse_reduction!r}')
        self.taps = nn.ModuleList(
            SCSE(self.plan.level_channels(level), scse_reduction) if flag else nn.Identity()
            for level, flag in zip(self.out_indices, scse_flags))
        self.scse = scse_flags
        self.feature_info = self._describe_taps()
        # the stage each tap reads, in tap order (a plain list: TorchScript reads it as List[int])
        self._tap_stages: List[int] = [tap_stages[level] for level in self.out_indices]

        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be -1 (none), 0 (stem) or 1..{num_stages} '
                             f'(stem + that many of the {num_stages} built stages), '
                             f'got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        # the resolved constructor arguments, saved with checkpoints so a file rebuilds its backbone
        self.config: Dict[str, Any] = dict(
            arch=self.arch, out_indices=self.out_indices, scse=self.scse,
            scse_reduction=scse_reduction, in_chans=in_chans, drop_path_rate=drop_path_rate,
            frozen_stages=frozen_stages, norm_eval=self.norm_eval, norm_layer=norm_layer,
            norm_eps=self.norm_eps, norm_momentum=self.norm_momentum, act_layer=act_layer,
            padding=padding, output_stride=output_stride, with_cp=with_cp,
            memory_efficient=self.memory_efficient, block_attention=block_attention,
            se_ratio=se_ratio, shortcut=shortcut, zero_init_residual=self.zero_init_residual,
            tap_dropout=float(tap_dropout))
        self.init_weights()

    # ------------------------------------------------------------------ description
    def _describe_taps(self) -> FeatureInfo:
        tap_stages = self.plan.tap_stages
        return FeatureInfo([
            TapInfo(level=level, channels=self.plan.level_channels(level),
                    stride=self.plan.level_stride(level),
                    module=f'taps.{slot}' if flag else f'stages.{tap_stages[level]}')
            for slot, (level, flag) in enumerate(zip(self.out_indices, self.scse))])

    @property
    def out_channels(self) -> List[int]:
        """Channels of each returned tap, shallow to deep."""
        return [info.channels for info in self.feature_info]

    @property
    def strides(self) -> List[int]:
        """Stride of each returned tap, shallow to deep."""
        return [info.stride for info in self.feature_info]

    def init_weights(self) -> None:
        """Initialise all weights (torchvision's scheme, plus ``zero_init_residual``) and re-apply
        freezing."""
        init_weights(self)
        if self.zero_init_residual:
            zero_init_residual_(self)
        self._freeze_stages()
        # MMEngine's runner calls init_weights() on children unless they say they are initialised
        self.is_init = True

    # ------------------------------------------------------------------ in-place changes
    def set_in_chans(self, in_chans: int, adapt_weights: bool = True) -> None:
        """Change the number of input channels in place (smp's ``set_in_channels``).

        Args:
            in_chans: new number of input channels.
            adapt_weights: derive the new stem kernel from the current RGB one
                (:func:`effnet_backbones.weights.adapt_stem_weight`); otherwise draw it afresh.
        """
        if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
            raise ValueError(f'in_chans must be a positive int, got {in_chans!r}')
        if in_chans == self.in_chans:
            return
        from .weights.stem import adapt_stem_weight

        conv = self.stem.conv
        old = conv.weight.detach()
        if adapt_weights:
            weight = adapt_stem_weight(old, in_chans)
        else:
            weight = old.new_empty((old.shape[0], in_chans, *old.shape[2:]))
            nn.init.kaiming_normal_(weight, mode='fan_out')
        conv.weight = nn.Parameter(weight)
        conv.in_channels = in_chans
        self.in_chans = in_chans
        self.config['in_chans'] = in_chans
        self._freeze_stages()

    def set_output_stride(self, output_stride: int) -> None:
        """Trade the deepest strides for dilations in place (smp's ``make_dilated``); no weight
        changes shape, so trained weights stay valid."""
        if output_stride == self.output_stride:
            return
        plan = build_plan(self.arch, drop_path_rate=self.config['drop_path_rate'],
                          output_stride=output_stride, se_ratio=self.config['se_ratio'])
        for stage, specs in zip(self.stages, plan.stages):
            for block, spec in zip(stage, specs):
                replan_conv2d(block.depthwise.conv, self.padding, spec.stride, spec.dilation)
                if isinstance(block.shortcut, ResNetDShortcut):
                    block.shortcut.set_stride(spec.stride)
        self.plan = plan
        self.output_stride = output_stride
        self.config['output_stride'] = output_stride
        self.feature_info = self._describe_taps()

    def set_padding(self, padding: str) -> None:
        """Switch between symmetric and TF 'same' padding in place (weights stay valid)."""
        if padding not in PADDING_MODES:
            raise ValueError(f'padding must be one of {PADDING_MODES}, got {padding!r}')
        for module in (self.stem, self.stages):
            for conv in module.modules():
                if isinstance(conv, nn.Conv2d):
                    replan_conv2d(conv, padding)
        self.padding = padding
        self.config['padding'] = padding

    def set_norm_args(self, eps: Optional[float] = None, momentum: Optional[float] = None) -> None:
        """Set the epsilon and momentum of every BN-like norm in place (``None`` keeps them)."""
        for module in self.modules():
            if is_norm(module) and hasattr(module, 'eps'):
                if eps is not None:
                    module.eps = eps
                if momentum is not None and hasattr(module, 'momentum'):
                    module.momentum = momentum
        self.norm_eps = self.norm_eps if eps is None else eps
        self.norm_momentum = self.norm_momentum if momentum is None else momentum
        self.config.update(norm_eps=self.norm_eps, norm_momentum=self.norm_momentum)

    # ------------------------------------------------------------------ training behaviour
    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem, *self.stages[:self.frozen_stages]]

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> 'EfficientNet':
        """Set training mode, keeping frozen stages (and all norms if ``norm_eval``) in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if is_norm(module):
                    module.eval()
        return self

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'EfficientNet expects a torch.Tensor (N, C, H, W), got {type(x).__name__}')
        if x.dim() != 4:
            raise ValueError(f'EfficientNet expects a 4D tensor (N, C, H, W), got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_chans:
            raise ValueError(f'input has {x.shape[1]} channels but the backbone was built with '
                             f'in_chans={self.in_chans} (input shape {tuple(x.shape)})')
        if x.shape[2] < MIN_INPUT_SIZE or x.shape[3] < MIN_INPUT_SIZE:
            raise ValueError(f'input of {x.shape[2]}x{x.shape[3]} px is too small; both sides must '
                             f'be at least {MIN_INPUT_SIZE} px (input shape {tuple(x.shape)})')

    @torch.jit.unused
    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp is None or not (self.training and torch.is_grad_enabled()):
            return stage(x)
        if self.with_cp == 'stage':
            return checkpoint_module(stage, x)
        for block in stage:
            x = checkpoint_module(block, x)
        return x

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return the taps listed in ``out_indices``, shallow to deep."""
        if not (torch.jit.is_tracing() or torch.jit.is_scripting()):
            self._check_input(x)
        x = self.stem(x)
        features: List[torch.Tensor] = []
        for stage_id, stage in enumerate(self.stages):
            if torch.jit.is_scripting():  # scripted models run without checkpointing
                x = stage(x)
            else:
                x = self._run_stage(stage, x)
            # TorchScript indexes module lists by constants only, hence a loop, not taps[slot]
            for slot, tap in enumerate(self.taps):
                if self._tap_stages[slot] == stage_id:
                    features.append(self.tap_dropout(tap(x)))
        return features

    def extra_repr(self) -> str:
        return (f'arch={self.arch!r}, out_indices={self.out_indices}, '
                f'out_channels={self.out_channels}, strides={self.strides}')
