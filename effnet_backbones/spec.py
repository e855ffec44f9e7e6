"""The EfficientNet family as data: one B0 stage table plus compound scaling coefficients.

Everything that builds a network (backbone, classifier, smp encoder, weight converters,
transplanting) reads the per-block plan produced here, so the family is defined once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = [
    'StageSpec', 'Scaling', 'BlockSpec', 'NetworkPlan', 'B0_STAGES', 'SCALING', 'ARCHS',
    'TAP_STAGES', 'TAP_STRIDES', 'STEM_CHANNELS', 'HEAD_CHANNELS', 'make_divisible',
    'scale_width', 'scale_depth', 'check_arch', 'tap_stages', 'build_plan',
]


@dataclass(frozen=True)
class StageSpec:
    """One row of the B0 stage table.

    Args:
        expand_ratio: width of the inverted bottleneck relative to the block's input.
        channels: output channels of every block in the stage (B0 width).
        repeats: number of blocks in the stage (B0 depth).
        stride: stride of the first block of the stage.
        kernel_size: depthwise kernel size.
        se_ratio: squeeze-and-excitation width relative to the block's *input* channels.
    """

    expand_ratio: int
    channels: int
    repeats: int
    stride: int
    kernel_size: int
    se_ratio: float = 0.25


@dataclass(frozen=True)
class Scaling:
    """Compound scaling coefficients of one variant (Tan & Le, 2019, table 1 and released code)."""

    width: float
    depth: float
    resolution: int
    dropout: float


#: The B0 stage table (paper table 1, after the 3x3 stride-2 stem of 32 channels).
B0_STAGES: Tuple[StageSpec, ...] = (
    StageSpec(expand_ratio=1, channels=16, repeats=1, stride=1, kernel_size=3),
    StageSpec(expand_ratio=6, channels=24, repeats=2, stride=2, kernel_size=3),
    StageSpec(expand_ratio=6, channels=40, repeats=2, stride=2, kernel_size=5),
    StageSpec(expand_ratio=6, channels=80, repeats=3, stride=2, kernel_size=3),
    StageSpec(expand_ratio=6, channels=112, repeats=3, stride=1, kernel_size=5),
    StageSpec(expand_ratio=6, channels=192, repeats=4, stride=2, kernel_size=5),
    StageSpec(expand_ratio=6, channels=320, repeats=1, stride=1, kernel_size=3),
)

STEM_CHANNELS = 32
#: Width of the classifier's 1x1 head convolution at B0 scale.
HEAD_CHANNELS = 1280

SCALING: Dict[str, Scaling] = {
    'b0': Scaling(1.0, 1.0, 224, 0.2),
    'b1': Scaling(1.0, 1.1, 240, 0.2),
    'b2': Scaling(1.1, 1.2, 260, 0.3),
    'b3': Scaling(1.2, 1.4, 300, 0.3),
    'b4': Scaling(1.4, 1.8, 380, 0.4),
    'b5': Scaling(1.6, 2.2, 456, 0.4),
    'b6': Scaling(1.8, 2.6, 528, 0.5),
    'b7': Scaling(2.0, 3.1, 600, 0.5),
}
ARCHS: Tuple[str, ...] = tuple(SCALING)

STEM_STRIDE = 2


def tap_stages(stage_table: Sequence[StageSpec]) -> Tuple[int, ...]:
    """Stages whose outputs are feature levels: the last stage before each stride change, and
    the last stage (timm's rule for ``features_only``). B0's table gives (0, 1, 2, 4, 6)."""
    return tuple(index for index, row in enumerate(stage_table)
                 if index == len(stage_table) - 1 or stage_table[index + 1].stride > 1)


def tap_strides(stage_table: Sequence[StageSpec]) -> Tuple[int, ...]:
    """Nominal stride (output stride 32) of each feature level of ``stage_table``."""
    strides, stride = [], STEM_STRIDE
    for row in stage_table:
        stride *= row.stride
        strides.append(stride)
    return tuple(strides[index] for index in tap_stages(stage_table))


#: Feature levels 0..4 are the outputs of these stages; their nominal strides follow.
TAP_STAGES: Tuple[int, ...] = tap_stages(B0_STAGES)
TAP_STRIDES: Tuple[int, ...] = tap_strides(B0_STAGES)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never dropping below 90% of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale_width(channels: int, width: float) -> int:
    """Channels of a B0 layer in a variant with width coefficient ``width``."""
    return make_divisible(channels * width)


def scale_depth(repeats: int, depth: float) -> int:
    """Blocks of a B0 stage in a variant with depth coefficient ``depth``."""
    return int(math.ceil(repeats * depth))


def check_arch(arch: str) -> str:
    """Normalise ``arch`` ('b4', 'B4', 'efficientnet_b4', 'efficientnet-b4') to 'b4' or raise."""
    if not isinstance(arch, str):
        raise TypeError(f'arch must be a string such as "b4", got {arch!r} ({type(arch).__name__})')
    key = arch.lower()
    for prefix in ('efficientnet_', 'efficientnet-', 'effnet-', 'effnet_'):
        if key.startswith(prefix):
            key = key[len(prefix):]
    if key not in SCALING:
        raise ValueError(f'unknown EfficientNet arch {arch!r}; valid: {", ".join(ARCHS)} '
                         f'(also spelled efficientnet_b0 ... efficientnet_b7)')
    return key


@dataclass(frozen=True)
class BlockSpec:
    """Everything needed to build one MBConv block, after scaling and output-stride planning."""

    stage: int
    index: int  # position within the stage
    in_channels: int
    out_channels: int
    expand_ratio: int
    kernel_size: int
    stride: int
    dilation: int
    se_channels: int
    drop_path: float

    @property
    def mid_channels(self) -> int:
        """Channels of the expanded (depthwise) part of the block."""
        return self.in_channels * self.expand_ratio

    @property
    def has_skip(self) -> bool:
        """Whether the block adds its input to its output (stride 1, same channels)."""
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class NetworkPlan:
    """The scaled, per-block description of one variant."""

    arch: str
    scaling: Scaling
    stem_channels: int
    stages: Tuple[Tuple[BlockSpec, ...], ...]
    head_channels: int
    #: Stride of each stage's output (after output-stride planning).
    stage_strides: Tuple[int, ...]
    #: Stages whose outputs are feature levels 0..4 (see :func:`tap_stages`).
    tap_stages: Tuple[int, ...] = TAP_STAGES

    @property
    def blocks(self) -> List[BlockSpec]:
        """All blocks, in order."""
        return [block for stage in self.stages for block in stage]

    @property
    def stage_channels(self) -> Tuple[int, ...]:
        """Output channels of each stage."""
        return tuple(stage[-1].out_channels for stage in self.stages)

    @property
    def num_levels(self) -> int:
        """Number of feature levels (5 for the EfficientNet table)."""
        return len(self.tap_stages)

    def level_channels(self, level: int) -> int:
        """Channels of feature level ``level`` (0..4)."""
        return self.stage_channels[self.tap_stages[level]]

    def level_stride(self, level: int) -> int:
        """Stride of feature level ``level`` (0..4) given the planned output stride."""
        return self.stage_strides[self.tap_stages[level]]


def _se_channels(in_channels: int, ratio: float) -> int:
    """SE bottleneck width of a block: at least one channel, none when the ratio is 0."""
    return max(1, int(in_channels * ratio)) if ratio > 0 else 0


def build_plan(arch: str, drop_path_rate: float = 0.0, output_stride: int = 32,
               stage_table: Sequence[StageSpec] = B0_STAGES,
               se_ratio: Optional[float] = None) -> NetworkPlan:
    """Scale the B0 stage table to ``arch`` and plan strides, dilations and drop-path rates.

    Args:
        arch: variant name, 'b0' ... 'b7'.
        drop_path_rate: stochastic depth of the last block; it ramps linearly from 0 over all
            blocks of the full network (so it does not depend on which taps are built).
        output_stride: 32, 16 or 8; strides past it become dilations (DeepLab style: the block
            that would have reduced keeps the old dilation, the blocks after it use the new one).
    """
    arch = check_arch(arch)
    scaling = SCALING[arch]
    if not isinstance(drop_path_rate, (int, float)) or isinstance(drop_path_rate, bool) \
            or not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
    if se_ratio is not None and (not isinstance(se_ratio, (int, float)) or isinstance(se_ratio, bool)
                                 or not 0.0 <= se_ratio <= 1.0):
        raise ValueError(f'se_ratio must be None (the table\'s 0.25) or in [0, 1], got {se_ratio!r}')
    if output_stride not in (8, 16, 32):
        raise ValueError(f'output_stride must be one of 8, 16, 32, got {output_stride!r}')
    stem_channels = scale_width(STEM_CHANNELS, scaling.width)
    repeats = [scale_depth(row.repeats, scaling.depth) for row in stage_table]
    total_blocks = sum(repeats)

    current_stride, dilation = STEM_STRIDE, 1
    in_channels, block_id = stem_channels, 0
    stages, stage_strides = [], []
    for stage_id, (row, count) in enumerate(zip(stage_table, repeats)):
        out_channels = scale_width(row.channels, scaling.width)
        blocks = []
        for index in range(count):
            stride = row.stride if index == 0 else 1
            block_dilation = dilation
            if stride > 1 and current_stride * stride > output_stride:
                dilation *= stride
                stride = 1
            else:
                current_stride *= stride
            blocks.append(BlockSpec(
                stage=stage_id, index=index, in_channels=in_channels, out_channels=out_channels,
                expand_ratio=row.expand_ratio, kernel_size=row.kernel_size, stride=stride,
                dilation=block_dilation if index == 0 else dilation,
                se_channels=_se_channels(in_channels, row.se_ratio if se_ratio is None else se_ratio),
                drop_path=drop_path_rate * block_id / total_blocks))
            in_channels = out_channels
            block_id += 1
        stages.append(tuple(blocks))
        stage_strides.append(current_stride)
    return NetworkPlan(arch=arch, scaling=scaling, stem_channels=stem_channels,
                       stages=tuple(stages), head_channels=scale_width(HEAD_CHANNELS, scaling.width),
                       stage_strides=tuple(stage_strides), tap_stages=tap_stages(stage_table))

