"""What every part of weight handling shares: the error type, the in-memory checkpoint, key lists."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import torch

__all__ = ['WeightsError', 'Checkpoint', 'StateDict', 'first_keys', 'MAX_LISTED']

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]
#: How many keys an error message lists before '... (N in all)'.
MAX_LISTED = 8


class WeightsError(ValueError):
    """A checkpoint that cannot be read, recognised or loaded into the model."""


@dataclass
class Checkpoint:
    """A checkpoint read into memory, before conversion.

    Attributes:
        name: what the user gave, for messages: file path, URL, hub name or '<state dict>'.
        state_dict: tensors with the keys of the checkpoint (wrappers and 'module.' removed).
        config: constructor options stored in our own format, else None.
        hint: a source the name implies ('timm_tf' for 'tf_efficientnet...'), else None.
    """

    name: str
    state_dict: StateDict
    config: Optional[Dict[str, Any]] = None
    hint: Optional[str] = None


def first_keys(keys: Sequence[str], limit: int = MAX_LISTED) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')

