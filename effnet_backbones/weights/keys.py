"""EfficientNet state-dict key layouts (torchvision, timm, ours) and the variant a state dict holds.

Pure functions over names and shapes, no file or network access: the other modules of :mod:`effnet_backbones.weights`
reads checkpoints and loads them with these.

Keys are mapped module by module, never by position: each layout names the stem, head and
classifier, and the parts of a block, which depend on the block's kind (with or without an
expansion convolution). The kind is read from the keys themselves.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..spec import ARCHS, B0_STAGES, NetworkPlan, build_plan

__all__ = ['KeyLayout', 'LAYOUTS', 'layout_name', 'recognise_layout', 'rename_modules', 'to_ours',
           'from_ours', 'variants_of', 'describe_shapes', 'variant_text']

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]


# ---------------------------------------------------------------------------------------------
# Key layouts: module names of torchvision, timm and ours
# ---------------------------------------------------------------------------------------------

# Parts of one of our MBConv blocks, in forward order.
_PARTS_WITH_EXPAND = ('expand', 'depthwise', 'se', 'project')
_PARTS_NO_EXPAND = ('depthwise', 'se', 'project')


def _part_modules(has_expand: bool) -> Tuple[str, ...]:
    """Our module names inside one block (relative to the block)."""
    modules: List[str] = []
    for part in (_PARTS_WITH_EXPAND if has_expand else _PARTS_NO_EXPAND):
        modules += ['se.reduce', 'se.expand'] if part == 'se' else [f'{part}.conv', f'{part}.norm']
    return tuple(modules)


def _torchvision_block(has_expand: bool) -> Dict[str, str]:
    # torchvision's MBConv is one Sequential 'block' whose indices shift when there is no expansion
    parts: Dict[str, str] = {}
    for position, part in enumerate(_PARTS_WITH_EXPAND if has_expand else _PARTS_NO_EXPAND):
        if part == 'se':
            parts.update({'se.reduce': f'block.{position}.fc1', 'se.expand': f'block.{position}.fc2'})
        else:
            parts.update({f'{part}.conv': f'block.{position}.0', f'{part}.norm': f'block.{position}.1'})
    return parts


_TIMM_SE = {'se.reduce': 'se.conv_reduce', 'se.expand': 'se.conv_expand'}
# timm's InvertedResidual and DepthwiseSeparableConv name their norms by position, so 'bn1' is the
# expansion's norm in one and the depthwise norm in the other.
_TIMM_INVERTED_RESIDUAL = {'expand.conv': 'conv_pw', 'expand.norm': 'bn1', 'depthwise.conv': 'conv_dw',
                           'depthwise.norm': 'bn2', **_TIMM_SE, 'project.conv': 'conv_pwl',
                           'project.norm': 'bn3'}
_TIMM_DEPTHWISE_SEPARABLE = {'depthwise.conv': 'conv_dw', 'depthwise.norm': 'bn1', **_TIMM_SE,
                             'project.conv': 'conv_pw', 'project.norm': 'bn2'}


def _timm_block(has_expand: bool) -> Dict[str, str]:
    return dict(_TIMM_INVERTED_RESIDUAL if has_expand else _TIMM_DEPTHWISE_SEPARABLE)


def _our_block(has_expand: bool) -> Dict[str, str]:
    return {module: module for module in _part_modules(has_expand)}


@dataclass(frozen=True)
class KeyLayout:
    """How one code base names the modules of an EfficientNet.

    Attributes:
        name: 'torchvision', 'timm' or 'effnet_backbones'.
        outer: (our module, their module) pairs outside the stages: stem, head, classifier.
        block_pattern: matches a key inside a block; groups: stage, block index, rest.
        block_prefix: ``str.format(stage, index)`` gives a block's module prefix.
        stage_offset: their stage number minus ours (torchvision's ``features.0`` is the stem).
        expand_marker: start of the rest of a key found only in blocks with an expansion conv.
        block_modules: ``f(has_expand)`` -> {our module in the block: their module in the block}.
    """

    name: str
    outer: Tuple[Tuple[str, str], ...]
    block_pattern: 're.Pattern[str]'
    block_prefix: str
    stage_offset: int
    expand_marker: str
    block_modules: Callable[[bool], Dict[str, str]]

    def blocks(self, keys: Sequence[str]) -> List[Tuple[int, int, bool]]:
        """(our stage, index, has expansion) of every block named in ``keys``, in order."""
        rests: Dict[Tuple[int, int], List[str]] = defaultdict(list)
        for key in keys:
            match = self.block_pattern.match(key)
            if match:
                rests[(int(match[1]) - self.stage_offset, int(match[2]))].append(match[3])
        return [(stage, index, any(rest.startswith(self.expand_marker) for rest in found))
                for (stage, index), found in sorted(rests.items())]

    def module_map(self, blocks: Sequence[Tuple[int, int, bool]]) -> Dict[str, str]:
        """{our module: their module} for the stem, head, classifier and the given ``blocks``."""
        mapping = dict(self.outer)
        for stage, index, has_expand in blocks:
            theirs = self.block_prefix.format(stage + self.stage_offset, index)
            for ours, module in self.block_modules(has_expand).items():
                mapping[f'stages.{stage}.{index}.{ours}'] = theirs + module
        return mapping


_HEAD_FEATURE = len(B0_STAGES) + 1  # torchvision: features.0 stem, 1..7 stages, 8 head

LAYOUTS: Dict[str, KeyLayout] = {
    'torchvision': KeyLayout(
        name='torchvision',
        outer=(('stem.conv', 'features.0.0'), ('stem.norm', 'features.0.1'),
               ('head.conv', f'features.{_HEAD_FEATURE}.0'),
               ('head.norm', f'features.{_HEAD_FEATURE}.1'), ('classifier', 'classifier.1')),
        block_pattern=re.compile(r'^features\.(\d+)\.(\d+)\.(block\..+)$'),
        block_prefix='features.{}.{}.', stage_offset=1, expand_marker='block.3.',
        block_modules=_torchvision_block),
    'timm': KeyLayout(
        name='timm',
        outer=(('stem.conv', 'conv_stem'), ('stem.norm', 'bn1'), ('head.conv', 'conv_head'),
               ('head.norm', 'bn2'), ('classifier', 'classifier')),
        block_pattern=re.compile(r'^blocks\.(\d+)\.(\d+)\.(.+)$'),
        block_prefix='blocks.{}.{}.', stage_offset=0, expand_marker='conv_pwl.',
        block_modules=_timm_block),
    'effnet_backbones': KeyLayout(
        name='effnet_backbones',
        outer=tuple((m, m) for m in ('stem.conv', 'stem.norm', 'head.conv', 'head.norm',
                                     'classifier')),
        block_pattern=re.compile(r'^stages\.(\d+)\.(\d+)\.(.+)$'),
        block_prefix='stages.{}.{}.', stage_offset=0, expand_marker='expand.',
        block_modules=_our_block),
}


def layout_name(source: str) -> str:
    """The key layout of a source: timm's ``tf_`` ports ('timm_tf') use timm's names."""
    return 'timm' if source == 'timm_tf' else source


def recognise_layout(keys: Sequence[str]) -> Optional[str]:
    """Which layout ``keys`` follow, from names alone; None for something else."""
    keyset = set(keys)
    for name, layout in LAYOUTS.items():
        stem_key = dict(layout.outer)['stem.conv'] + '.weight'
        if stem_key in keyset and any(layout.block_pattern.match(key) for key in keys):
            return name
    return None


Renamed = Tuple[StateDict, Dict[str, str], List[str]]


def rename_modules(state_dict: Mapping[str, Tensor], modules: Mapping[str, str]) -> Renamed:
    """Rename keys module by module; returns (renamed, {new key: old key}, keys with no rule)."""
    renamed: StateDict = {}
    origin: Dict[str, str] = {}
    unmatched: List[str] = []
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition('.')
        target = modules.get(module)
        if target is None:
            unmatched.append(key)
            continue
        renamed[f'{target}.{leaf}'] = value
        origin[f'{target}.{leaf}'] = key
    return renamed, origin, unmatched


def to_ours(state_dict: Mapping[str, Tensor], layout: str) -> Renamed:
    """Rename a state dict in ``layout`` ('torchvision', 'timm', 'effnet_backbones') to our keys.

    Returns:
        (renamed state dict, {our key: original key}, original keys that name no EfficientNet layer).
        Our own keys keep their names (scSE taps included).
    """
    source = LAYOUTS[layout]
    modules = source.module_map(source.blocks(list(state_dict)))
    theirs_to_ours = {theirs: ours for ours, theirs in modules.items()}
    if layout == 'effnet_backbones':  # scSE taps exist only in our layout: they pass as they are
        theirs_to_ours.update({key.rpartition('.')[0]: key.rpartition('.')[0]
                               for key in state_dict if key.startswith('taps.')})
    return rename_modules(state_dict, theirs_to_ours)


def from_ours(state_dict: Mapping[str, Tensor], layout: str) -> Renamed:
    """Rename a state dict with our keys to ``layout``; same returns as :func:`to_ours`."""
    blocks = LAYOUTS['effnet_backbones'].blocks(list(state_dict))
    return rename_modules(state_dict, LAYOUTS[layout].module_map(blocks))


# ---------------------------------------------------------------------------------------------
# Variant from tensor shapes
# ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _plan(arch: str) -> NetworkPlan:
    return build_plan(arch)


def _shape(state_dict: Mapping[str, Tensor], key: str) -> Optional[Tuple[int, ...]]:
    value = state_dict.get(key)
    return tuple(value.shape) if isinstance(value, Tensor) else None


def _stage_shapes(ours: Mapping[str, Tensor]) -> Dict[int, Tuple[int, Optional[int]]]:
    """{stage: (number of blocks, output channels)} of the stages present in ``ours``."""
    blocks = LAYOUTS['effnet_backbones'].blocks(list(ours))
    counts: Dict[int, int] = defaultdict(int)
    for stage, _, _ in blocks:
        counts[stage] += 1
    result = {}
    for stage, count in counts.items():
        project = _shape(ours, f'stages.{stage}.{count - 1}.project.conv.weight')
        result[stage] = (count, project[0] if project else None)
    return result


def describe_shapes(ours: Mapping[str, Tensor]) -> str:
    stem = _shape(ours, 'stem.conv.weight')
    stages = _stage_shapes(ours)
    parts = [f'stem {stem[0] if stem else "?"} ch']
    parts += [f'stage {s}: {n} blocks, {c} ch' for s, (n, c) in sorted(stages.items())]
    return '; '.join(parts)


def variants_of(ours: Mapping[str, Tensor]) -> List[str]:
    """Variants ('b0' ... 'b7') whose shapes agree with a state dict in our layout.

    Stem width, block count and width of every stage present, and the head width if present,
    must all agree. A checkpoint of a backbone built only to a shallow tap can fit several.
    """
    stem = _shape(ours, 'stem.conv.weight')
    stages = _stage_shapes(ours)
    if stem is None or not stages or sorted(stages) != list(range(len(stages))):
        return []
    head = _shape(ours, 'head.conv.weight')
    fits = []
    for arch in ARCHS:
        plan = _plan(arch)
        if stem[0] != plan.stem_channels or len(stages) > len(plan.stages):
            continue
        if any((count, channels) != (len(plan.stages[s]), plan.stage_channels[s])
               for s, (count, channels) in stages.items()):
            continue
        if head is not None and head[0] != plan.head_channels:
            continue
        fits.append(arch)
    return fits


def variant_text(variants: Sequence[str]) -> str:
    if not variants:
        return 'no EfficientNet B0-B7'
    return ' or '.join(f'efficientnet_{arch}' for arch in variants)
