"""Loading MMEngine checkpoints on torch >= 2.6, where ``torch.load`` defaults to weights only.

mmengine 0.10's local loader calls ``torch.load(path)``. A training checkpoint holds more than
tensors: the message hub's ``HistoryBuffer`` objects pickle bound methods (``getattr``), which the
weights-only unpickler can never allow, so resuming fails and allow-listing classes cannot fix it.
:func:`install_checkpoint_loader` replaces mmengine's loader for local files with one that tries the
safe weights-only load first (plain state dicts, exported weights) and falls back to a full pickle
load only for files that are MMEngine training checkpoints, which is what mmengine did on torch
< 2.6 and what its upstream fix does. The check tells training checkpoints from other files (a
pickled whole model, say, gets a clear error instead of being unpickled); it is no security
boundary: as with any pickle, load only checkpoints you trust.
"""
from __future__ import annotations

import logging
import os.path as osp
import pickle
import zipfile
from typing import Any, Callable, Dict, Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.hooks import Hook
from mmengine.runner import CheckpointLoader

__all__ = ['load_from_local', 'install_checkpoint_loader', 'is_mmengine_checkpoint', 'checkpoint_meta',
           'load_trained_model', 'check_checkpoint_fits', 'CheckpointMismatchError',
           'CheckpointFitHook']

MapLocation = Optional[Union[str, torch.device, Callable]]
#: A pickled global every MMEngine training checkpoint references (the message hub's buffers).
MMENGINE_MARKER = b'mmengine.logging.history_buffer'


def is_mmengine_checkpoint(path: str) -> bool:
    """Whether ``path`` is a torch zip archive whose pickle references MMEngine's message hub."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next(name for name in archive.namelist() if name.endswith('/data.pkl'))
            return MMENGINE_MARKER in archive.read(pickled)
    except (zipfile.BadZipFile, StopIteration, OSError):
        return False


def load_from_local(filename: str, map_location: MapLocation = None) -> Any:
    """Load a local checkpoint: weights only if possible, else a full load of an MMEngine one.

    Named like the mmengine loader it replaces (mmengine logs the name after 'load_from_').
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} not found')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not is_mmengine_checkpoint(filename):
            raise pickle.UnpicklingError(
                f'{filename} holds objects that torch.load(weights_only=True) refuses and it is '
                f'not an MMEngine training checkpoint, so it is not unpickled: {err}') from err
    except (RuntimeError, EOFError) as err:
        raise RuntimeError(f'cannot read checkpoint {filename} (truncated or not a torch '
                           f'file?): {err}') from err
    print_log(f'{filename}: MMEngine training state (message hub, optimizer) needs a full pickle '
              f'load (torch >= 2.6 loads weights only by default); loading it as trusted',
              logger='current', level=logging.DEBUG)
    return torch.load(filename, map_location=map_location, weights_only=False)


def install_checkpoint_loader() -> None:
    """Make MMEngine's runner (resume, ``load_from``) use :func:`load_from_local`."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not fit the model the config builds."""


def _describe(model: torch.nn.Module) -> str:
    variant = getattr(model, 'variant', None)  # EfficientDet: 'd0' ... 'd7'
    name = type(model).__name__
    return f'{name}-{variant.upper()}' if isinstance(variant, str) else name


def check_checkpoint_fits(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor],
                          source: str) -> None:
    """Raise :class:`CheckpointMismatchError` naming ``source`` and the first tensors whose shapes
    differ, that the model has and the checkpoint lacks, or that the checkpoint has and the model
    lacks (MMEngine would load such a checkpoint partly, leave the rest at its initialisation and
    only warn)."""
    own = model.state_dict()
    state = {key[len('module.'):] if key.startswith('module.') else key: value
             for key, value in state_dict.items()}
    shapes = [f'{key}: checkpoint {tuple(state[key].shape)}, model {tuple(value.shape)}'
              for key, value in own.items()
              if key in state and hasattr(state[key], 'shape') and state[key].shape != value.shape]
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    if not shapes and not missing and not unexpected:
        return
    details = []
    if shapes:
        details.append(f'{len(shapes)} tensor(s) of another shape, e.g. ' + '; '.join(shapes[:3]))
    if missing:
        details.append(f'{len(missing)} tensor(s) missing, e.g. ' + ', '.join(missing[:3]))
    if unexpected:
        details.append(f'{len(unexpected)} tensor(s) the model does not have, e.g. '
                       + ', '.join(unexpected[:3]))
    raise CheckpointMismatchError(
        f'checkpoint {source} does not fit the model the config builds ({_describe(model)}): '
        + ' and '.join(details) + '. Was it trained with another config (another variant, arch, '
        'width or number of classes)? Use the config saved in its work dir.')


class CheckpointFitHook(Hook):
    """Check every checkpoint the runner loads (``load_from``, ``--resume``) against the model
    before its weights are copied: MMEngine loads non-strictly and would only warn."""

    priority = 'LOWEST'  # after hooks that rebuild the model for the checkpoint (progressive)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        state = checkpoint.get('state_dict', checkpoint)
        source = runner._load_from or 'being resumed'
        check_checkpoint_fits(model, state, str(source))


def load_trained_model(cfg: Any, checkpoint: str, device: Union[str, torch.device] = 'cpu'):
    """Build ``cfg.model`` and load a training checkpoint's weights.

    Returns ``(model in eval mode on device, the checkpoint's meta dict)``.
    """
    from effnet_backbones.registry import MODELS  # the configs' custom_imports registered the task

    from .data import resolve_from_data

    state = load_from_local(checkpoint, map_location='cpu')
    meta = state.get('meta') or {}
    resolve_from_data(cfg, meta)  # classes and channels the model was trained with
    model = MODELS.build(cfg.model)
    weights = state.get('state_dict', state)
    check_checkpoint_fits(model, weights, checkpoint)
    model.load_state_dict(weights)
    return model.to(device).eval(), meta


def checkpoint_meta(checkpoint: str) -> Dict[str, Any]:
    """The ``meta`` of a training checkpoint (``dataset_meta`` holds its classes), or {}."""
    state = load_from_local(checkpoint, map_location='cpu')
    return dict(state.get('meta') or {}) if isinstance(state, dict) else {}
