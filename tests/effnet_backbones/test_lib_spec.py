import pytest

from effnet_backbones.spec import (ARCHS, B0_STAGES, SCALING, build_plan, check_arch,
                                   make_divisible, scale_depth)
from reference import REFERENCE


def test_make_divisible_snaps_to_eight_and_never_below_ninety_percent():
    assert make_divisible(32 * 1.1) == 32  # 35.2 -> 32 (>= 90%)
    assert make_divisible(40 * 1.1) == 48  # 44 -> 48 (round half up)
    assert make_divisible(112 * 1.4) == 160  # 156.8 -> 160
    assert make_divisible(20) == 24
    assert make_divisible(12) == 16
    assert make_divisible(4) == 8  # never below the divisor
    assert all(make_divisible(v) >= 0.9 * v for v in range(1, 2000))


def test_depth_is_ceil_of_scaled_repeats():
    assert scale_depth(4, 3.1) == 13
    assert scale_depth(1, 1.1) == 2
    assert scale_depth(3, 1.4) == 5


@pytest.mark.parametrize('arch', ARCHS)
def test_plan_matches_reference_table(arch):
    _, res, dropout, per_stage, blocks, skips, taps, _ = REFERENCE[arch]
    plan = build_plan(arch)
    assert tuple(len(stage) for stage in plan.stages) == per_stage
    assert len(plan.blocks) == blocks
    assert sum(b.has_skip for b in plan.blocks) == skips
    assert tuple(plan.level_channels(level) for level in range(5)) == taps
    assert tuple(plan.level_stride(level) for level in range(5)) == (2, 4, 8, 16, 32)
    assert plan.scaling.resolution == res and plan.scaling.dropout == dropout


def test_b0_table_and_block_rules():
    assert [row.channels for row in B0_STAGES] == [16, 24, 40, 80, 112, 192, 320]
    plan = build_plan('b0')
    first = plan.stages[0][0]
    assert first.expand_ratio == 1 and first.in_channels == 32 and first.se_channels == 8
    block = plan.stages[1][0]  # 16 -> 24, expand 6, stride 2
    assert (block.mid_channels, block.se_channels, block.stride) == (96, 4, 2)
    assert not block.has_skip and plan.stages[1][1].has_skip


def test_drop_path_ramps_linearly_over_all_blocks():
    plan = build_plan('b0', drop_path_rate=0.2)
    rates = [b.drop_path for b in plan.blocks]
    assert rates[0] == 0.0
    assert rates == pytest.approx([0.2 * i / 16 for i in range(16)])


@pytest.mark.parametrize('output_stride,strides,dilations', [
    (16, (2, 4, 8, 16, 16, 16, 16), (1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2)),
    (8, (2, 4, 8, 8, 8, 8, 8), (1, 2, 2, 2, 2, 2, 2, 4, 4, 4, 4)),
])
def test_output_stride_turns_strides_into_dilations(output_stride, strides, dilations):
    plan = build_plan('b0', output_stride=output_stride)
    assert plan.stage_strides == strides
    # stages 3..6 of b0: 3 + 3 + 4 + 1 blocks; the block that would reduce keeps the old dilation
    deep = plan.blocks[5:]
    assert tuple(b.dilation for b in deep) == dilations
    reducing = [b for b in plan.blocks if b.stride > 1]
    assert len(reducing) == {16: 3, 8: 2}[output_stride]


@pytest.mark.parametrize('name,expected', [('b4', 'b4'), ('B4', 'b4'), ('efficientnet_b7', 'b7'),
                                           ('efficientnet-b2', 'b2')])
def test_check_arch_spellings(name, expected):
    assert check_arch(name) == expected


@pytest.mark.parametrize('bad', ['b8', 'resnet', 'efficientnet_b9', ''])
def test_check_arch_rejects_unknown_and_lists_valid(bad):
    with pytest.raises(ValueError) as err:
        check_arch(bad)
    assert repr(bad) in str(err.value) and 'b0, b1, b2, b3, b4, b5, b6, b7' in str(err.value)


def test_scaling_table_covers_b0_to_b7():
    assert list(SCALING) == [f'b{i}' for i in range(8)]
