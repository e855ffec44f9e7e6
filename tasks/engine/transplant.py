"""Start training a larger model from a trained smaller one (see docs/transplant.md).

Two entry points share this module:

- the config key ``init_from=dict(type='transplant', checkpoint=..., arch=None, config=None,
  mode='exact')``: :func:`apply_init_from` turns it into a :class:`TransplantInitHook`, which fills
  the freshly built model before the first iteration (not when resuming);
- ``tools/transplant.py``, through :func:`grow_checkpoint`, which writes the grown model as a
  checkpoint that ``load_from`` (or ``init_from``) reads.

The source is rebuilt from the destination's own model config with the source's variant (told by
the checkpoint's tensor shapes, or ``arch=``), or from another config file (``config=``). A
checkpoint of a bare backbone (ours, torchvision's, timm's) grows every EfficientNet in the model.
"""
from __future__ import annotations

import copy
import glob
import logging
import os
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from effnet_backbones.registry import MODELS
from effnet_backbones.spec import check_arch
from effnet_backbones.transplanting import (TransplantError, TransplantReport, find_backbones,
                                            transplant)
from effnet_backbones.weights import variants_of

from .checkpoint import checkpoint_meta, load_from_local
from .data import resolve_from_data

__all__ = ['INIT_FROM_TYPE', 'resolve_checkpoint', 'read_state_dict', 'model_config_for',
           'source_arch', 'build_source', 'transplant_into', 'grow_checkpoint',
           'TransplantInitHook', 'apply_init_from']

INIT_FROM_TYPE = 'transplant'
INIT_FROM_KEYS = ('type', 'checkpoint', 'arch', 'config', 'mode')
REPORT_FILE = 'transplant_report.txt'
_STEM = 'stem.conv.weight'
_DROPPED = ('pretrained', 'init_cfg')  # weights the source must not fetch: the checkpoint has them


def _log(message: str, level: int = logging.INFO) -> None:
    print_log(message, logger='current', level=level)


# ---------------------------------------------------------------------------------------------
# Reading the source checkpoint
# ---------------------------------------------------------------------------------------------

def resolve_checkpoint(path: str) -> str:
    """A checkpoint file, or for a work dir its best checkpoint (``best_*.pth``), else its last."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'transplant source {path!r} is neither a checkpoint file nor a '
                                f'work dir')
    best = sorted(glob.glob(osp.join(path, 'best_*.pth')))
    if len(best) == 1:
        return best[0]
    last = osp.join(path, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as handle:
            return handle.read().strip()
    raise FileNotFoundError(f'work dir {path!r} holds no best_*.pth (found {len(best)}) and no '
                            f'last_checkpoint; pass the checkpoint file')


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The model tensors of an MMEngine checkpoint (or a plain state dict) on the CPU."""
    raw = load_from_local(path, map_location='cpu')
    state = raw.get('state_dict', raw) if isinstance(raw, Mapping) else raw
    if not isinstance(state, Mapping):
        raise TransplantError(f"checkpoint '{path}' holds a {type(state).__name__}, not a state dict")
    return {key[len('module.'):] if key.startswith('module.') else key: value
            for key, value in state.items() if isinstance(value, torch.Tensor)}


def _backbone_prefixes(state: Mapping[str, torch.Tensor]) -> List[str]:
    """Prefixes ('net.encoder.backbone.') of the EfficientNets inside a task model's state dict."""
    return sorted(key[:-len(_STEM)] for key in state if key.endswith(_STEM) and key != _STEM)


def source_arch(state: Mapping[str, torch.Tensor], path: str) -> str:
    """The variant of the EfficientNet(s) in a task checkpoint, from their tensor shapes."""
    found = set()
    for prefix in _backbone_prefixes(state):
        inner = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        fits = variants_of(inner)
        if len(fits) != 1:
            raise TransplantError(f"checkpoint '{path}': the EfficientNet at '{prefix[:-1]}' fits "
                                  f'{fits or "no variant"}; give arch= (the source variant)')
        found.add(fits[0])
    if len(found) != 1:
        raise TransplantError(f"checkpoint '{path}' holds EfficientNets of variants "
                              f'{sorted(found) or "none"}; give arch= (the source variant)')
    return found.pop()


# ---------------------------------------------------------------------------------------------
# Building models
# ---------------------------------------------------------------------------------------------

def _edit(node: Any, arch: Optional[str]) -> Any:
    """Copy of a config node with every ``arch`` set to ``arch`` and pretrained weights dropped."""
    if isinstance(node, Mapping):
        return {key: (arch if key == 'arch' and arch is not None else _edit(value, arch))
                for key, value in node.items() if key not in _DROPPED}
    if isinstance(node, (list, tuple)):
        return type(node)(_edit(value, arch) for value in node)
    return copy.deepcopy(node)


def _has_key(node: Any, key: str) -> bool:
    if isinstance(node, Mapping):
        return key in node or any(_has_key(value, key) for value in node.values())
    if isinstance(node, (list, tuple)):
        return any(_has_key(value, key) for value in node)
    return False


def model_config_for(model_cfg: Mapping[str, Any], arch: Optional[str]) -> Dict[str, Any]:
    """The model config with its EfficientNet variant(s) set to ``arch`` (None keeps them) and no
    pretrained weights to load."""
    if arch is not None:
        arch = check_arch(arch)
    edited = _edit(dict(model_cfg), arch)
    if arch is not None and not _has_key(edited, 'arch'):
        raise TransplantError(f"the model config has no 'arch' key to set to {arch!r}: "
                              f'{dict(model_cfg)!r}')
    return edited


def build_source(model_cfg: Mapping[str, Any], checkpoint: str,
                 arch: Optional[str] = None) -> nn.Module:
    """The trained source model: ``model_cfg`` at the checkpoint's variant, with its weights."""
    state = read_state_dict(checkpoint)
    arch = check_arch(arch) if arch is not None else source_arch(state, checkpoint)
    model = MODELS.build(model_config_for(model_cfg, arch))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # missing, unexpected or differently shaped tensors
        detail = '; '.join(line.strip() for line in str(err).splitlines()[1:4])
        raise TransplantError(
            f"checkpoint '{checkpoint}' does not fit the model config built at "
            f'efficientnet_{arch} ({detail} ...); give the source run\'s config (config=, with the '
            f'same options it was trained with) or its variant (arch=)') from None
    return model.eval()


def _is_task_checkpoint(path: str) -> bool:
    """Whether ``path`` holds a task model (its EfficientNets under a prefix), not a bare backbone."""
    try:
        return bool(_backbone_prefixes(read_state_dict(path)))
    except (TransplantError, RuntimeError, OSError):
        return False


def transplant_into(model: nn.Module, checkpoint: str, model_cfg: Optional[Mapping[str, Any]] = None,
                    arch: Optional[str] = None, config: Optional[str] = None,
                    mode: str = 'exact') -> List[TransplantReport]:
    """Grow the trained model in ``checkpoint`` into the built ``model`` (in place).

    Args:
        model: the destination, built from ``model_cfg``.
        checkpoint: a task checkpoint (file or work dir), or a backbone checkpoint (ours,
            torchvision's, timm's), which then grows every EfficientNet of ``model``.
        model_cfg: the destination's model config; the source is this at its own variant.
        arch: the source variant, when its shapes do not tell.
        config: the source run's config file, when its model config differs from ``model_cfg``.
        mode: 'exact' or 'plain'.
    """
    path = resolve_checkpoint(checkpoint)
    if not _is_task_checkpoint(path):
        return [transplant(path, backbone, mode=mode) for backbone in find_backbones(model).values()]
    if config is not None:
        model_cfg = Config.fromfile(config).model
    if model_cfg is None:
        raise TransplantError(f"checkpoint '{path}' holds a task model; give its model config")
    source = build_source(model_cfg, path, arch)
    return [transplant(source, model, mode=mode)]


def grow_checkpoint(checkpoint: str, arch: str, out: str, config: str, mode: str = 'exact',
                    src_arch: Optional[str] = None,
                    cfg_options: Optional[Dict[str, Any]] = None) -> TransplantReport:
    """``tools/transplant.py --config``: write the ``arch`` variant of a trained task model.

    The source is ``config``'s model (after ``cfg_options``, as given to ``tools/train.py``) at
    the checkpoint's variant. The output holds ``state_dict`` (loadable with ``load_from`` in a
    config of the larger model) and ``meta.transplant`` (the report as plain data).
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(copy.deepcopy(cfg_options))
    resolve_from_data(cfg, checkpoint_meta(resolve_checkpoint(checkpoint)))  # the source's classes
    model = MODELS.build(model_config_for(cfg.model, arch))
    report, = transplant_into(model, checkpoint, cfg.model, arch=src_arch, mode=mode)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save({'state_dict': model.state_dict(),
                'meta': {'transplant': report.to_dict(), 'config': config, 'arch': check_arch(arch)}},
               out)
    return report


# ---------------------------------------------------------------------------------------------
# The config hook
# ---------------------------------------------------------------------------------------------

class TransplantInitHook(Hook):
    """Fill the model from a trained smaller one before the first training iteration.

    Built by :func:`apply_init_from` from the config's ``init_from``; it runs after MMEngine's own
    initialisation and does nothing when a run resumes. The report goes to the log and to
    ``transplant_report.txt`` in the work dir.
    """

    priority = 'VERY_HIGH'

    def __init__(self, checkpoint: str, model_cfg: Optional[Dict[str, Any]] = None,
                 arch: Optional[str] = None, config: Optional[str] = None,
                 mode: str = 'exact') -> None:
        self.checkpoint, self.model_cfg = checkpoint, model_cfg
        self.arch, self.config, self.mode = arch, config, mode

    def before_train(self, runner) -> None:
        if runner.iter > 0:
            _log(f'init_from: resumed at iteration {runner.iter}; not transplanting again')
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        reports = transplant_into(model, self.checkpoint, self.model_cfg, self.arch, self.config,
                                  self.mode)
        text = '\n\n'.join(report.summary() for report in reports)
        _log(f'init_from {self.checkpoint}:\n{text}')
        if is_main_process():  # every rank transplants the same weights; one writes the report
            with open(osp.join(runner.work_dir, REPORT_FILE), 'w') as handle:
                handle.write(text + '\n')


def apply_init_from(cfg: Config) -> Optional[Dict[str, Any]]:
    """Turn ``cfg.init_from`` into a :class:`TransplantInitHook` in ``custom_hooks``.

    Returns the hook config, or None without ``init_from``.
    """
    spec = cfg.get('init_from')
    if not spec:
        return None
    if not isinstance(spec, Mapping) or spec.get('type') != INIT_FROM_TYPE or 'checkpoint' not in spec:
        raise ValueError(f"init_from must be dict(type='{INIT_FROM_TYPE}', checkpoint=FILE_OR_WORK_DIR"
                         f"[, arch=..., config=..., mode='exact']), got {spec!r}")
    unknown = set(spec) - set(INIT_FROM_KEYS)
    if unknown:
        raise ValueError(f'init_from: unknown keys {sorted(unknown)}; valid: {", ".join(INIT_FROM_KEYS)}')
    if cfg.get('load_from') and not cfg.get('resume'):
        raise ValueError(f'init_from and load_from are both set ({cfg.load_from!r}); keep one')
    hook = dict(type='effnet_backbones.TransplantInitHook', model_cfg=copy.deepcopy(cfg.model.to_dict()),
                **{key: value for key, value in spec.items() if key != 'type'})
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [hook]
    return hook
