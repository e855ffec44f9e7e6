"""segmentation-models-pytorch encoder adapter: ``smp.Unet('effnet-b4', encoder_weights=None)``.

Importing this module registers ``effnet-b0`` ... ``effnet-b7`` and the scSE variants
``effnet-b0-scse`` ... ``effnet-b7-scse`` in smp's encoder table, so every smp decoder builds
on our backbone. smp passes only the table entry's ``params`` (plus depth and output stride) to an
encoder, so other backbone options (drop path, norm layer, pretrained weights, scSE on some taps
only) go through :func:`create_smp_model`, which hands them to smp's own encoder construction:
the backbone is built once, with its final options.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional

import segmentation_models_pytorch as smp
import torch
import torch.nn as nn
from segmentation_models_pytorch.encoders import encoders as SMP_ENCODERS
from segmentation_models_pytorch.encoders._base import EncoderMixin

from ..backbone import NUM_LEVELS
from ..factory import build_backbone
from ..spec import ARCHS, check_arch

__all__ = ['EffNetEncoder', 'ENCODER_NAMES', 'encoder_name', 'create_smp_model',
           'register_smp_encoders']


def encoder_name(arch: str, scse: bool = False) -> str:
    """smp encoder name of ``arch``: 'effnet-b4', or 'effnet-b4-scse' with scSE on every tap."""
    return f'effnet-{check_arch(arch)}' + ('-scse' if scse else '')


class EffNetEncoder(nn.Module, EncoderMixin):
    """Our EfficientNet as an smp encoder: features ``[input, s2, s4, s8, s16, s32]``.

    smp expects the input itself first and ``out_channels`` starting with the input channels; the
    backbone's level 0 (stride 2, the first stage's output) follows. ``depth`` < 5 drops the deepest
    levels, and stages past the deepest tap are not built at all.

    Args:
        arch: 'b0' ... 'b7'.
        depth: number of downsampling levels smp decodes (1..5).
        output_stride: 32, 16 or 8; smp's DeepLab and PAN decoders ask for 16 or 8, which become
            dilations in the backbone.
        in_channels: input channels (smp normally sets them later through :meth:`set_in_channels`).
        **backbone_options: any other :class:`~effnet_backbones.EfficientNet` option (``scse``,
            ``drop_path_rate``, ``norm_layer``, ``pretrained`` ...).
    """

    # scriptable, exportable and compilable in eval mode, as smp's own encoders (EncoderMixin's
    # _is_torch_* flags stay True; tests/effnet_backbones/adapters/test_adapter_smp_contract.py)

    def __init__(self, arch: str = 'b0', depth: int = 5, output_stride: int = 32,
                 in_channels: int = 3, **backbone_options: Any) -> None:
        nn.Module.__init__(self)
        if not isinstance(depth, int) or not 1 <= depth <= NUM_LEVELS:
            raise ValueError(f'{type(self).__name__} depth must be 1..{NUM_LEVELS}, got {depth!r}')
        for reserved in ('out_indices', 'in_chans', 'arch'):
            if reserved in backbone_options:
                raise TypeError(f'{type(self).__name__} sets {reserved!r} itself '
                                f'(from arch, depth and in_channels); do not pass it')
        self.backbone = build_backbone(arch, out_indices=tuple(range(depth)),
                                       in_chans=in_channels, output_stride=output_stride,
                                       **backbone_options)
        # smp's EncoderMixin reads these private attributes
        self._depth = depth
        self._in_channels = in_channels
        self._output_stride = output_stride
        self._out_channels = [in_channels] + self.backbone.out_channels

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return ``[x, s2, s4, ...]`` with ``depth`` feature maps after the input."""
        features = [x]
        features.extend(self.backbone(x))
        return features

    def set_in_channels(self, in_channels: int, pretrained: bool = True) -> None:
        """Change the input channels in place; trained RGB stem weights are adapted, else redrawn."""
        if in_channels == self._in_channels:
            return
        self.backbone.set_in_chans(in_channels, adapt_weights=pretrained)
        self._in_channels = in_channels
        self._out_channels = [in_channels] + self._out_channels[1:]

    def make_dilated(self, output_stride: int) -> None:
        """Trade the deepest strides for dilation in place (smp calls this for DeepLab and PAN)."""
        self.backbone.set_output_stride(output_stride)
        self._output_stride = output_stride


def _registry_entry(arch: str, scse: bool) -> Dict[str, Any]:
    return {
        'encoder': EffNetEncoder,
        # no smp hub weights: load ours with create_smp_model(encoder_options=dict(pretrained=...))
        'pretrained_settings': {},
        'params': {'arch': arch, 'scse': scse},
    }


ENCODER_NAMES = tuple(encoder_name(arch, scse) for scse in (False, True) for arch in ARCHS)


def register_smp_encoders() -> None:
    """Add our encoders to smp's table (idempotent; done when ``effnet_backbones`` is imported)."""
    for scse in (False, True):
        for arch in ARCHS:
            SMP_ENCODERS[encoder_name(arch, scse)] = _registry_entry(arch, scse)


@contextlib.contextmanager
def _encoder_params(name: str, extra: Dict[str, Any]) -> Iterator[None]:
    """Add ``extra`` to the ``params`` smp passes to encoder ``name``, while smp builds a model."""
    entry = SMP_ENCODERS[name]
    saved = entry['params']
    entry['params'] = {**saved, **extra}
    try:
        yield
    finally:
        entry['params'] = saved


def create_smp_model(decoder: str = 'Unet', arch: str = 'b0', in_channels: int = 3,
                     classes: int = 1, encoder_options: Optional[Dict[str, Any]] = None,
                     **decoder_options: Any) -> nn.Module:
    """Build any smp decoder on our encoder, with any backbone option.

    Example: ``create_smp_model('Unet', 'b4', in_channels=1, classes=3,
    encoder_options=dict(scse=True, drop_path_rate=0.2))``. The backbone is built once, with
    ``in_channels`` and the decoder's depth and output stride.

    Args:
        decoder: smp architecture name, case-insensitive ('Unet', 'FPN', 'DeepLabV3Plus' ...).
        arch: 'b0' ... 'b7'.
        in_channels: input channels.
        classes: output channels of the segmentation head.
        encoder_options: :class:`~effnet_backbones.EfficientNet` options for the encoder (scSE per
            tap, drop path, norm layer, pretrained weights ...).
        **decoder_options: the smp model's own arguments (``encoder_depth``, ``decoder_channels``,
            ``encoder_output_stride``, ``activation`` ...).
    """
    name = encoder_name(arch)
    with _encoder_params(name, dict(encoder_options or {}, in_channels=in_channels)):
        return smp.create_model(decoder, encoder_name=name, encoder_weights=None,
                                in_channels=in_channels, classes=classes, **decoder_options)


register_smp_encoders()
