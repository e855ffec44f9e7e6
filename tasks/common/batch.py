"""Moving a collated batch (``dict(inputs=[tensor ...], data_samples=[sample ...])``) to a device.

Every task's samples are dataclasses with a ``to(device)`` method (``SegSample``, ``DetSample``);
the tasks' data preprocessors differ only in what they do with the images afterwards.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch

__all__ = ['move_batch']


def move_batch(data: Dict[str, Any], device: torch.device,
               non_blocking: bool = False) -> Tuple[List[torch.Tensor], List[Any]]:
    """``(images, samples)`` of a collated batch, each on ``device``."""
    inputs = [tensor.to(device, non_blocking=non_blocking) for tensor in data['inputs']]
    samples = [sample.to(device) for sample in data['data_samples']]
    return inputs, samples
