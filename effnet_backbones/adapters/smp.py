"""segmentation-models-pytorch encoder adapter: ``smp.Unet('effnet-b4', encoder_weights=None)``.

Importing this module registers ``effnet-b0`` ... ``effnet-b7`` and the scSE variants
``effnet-b0-scse`` ... ``effnet-b7-scse`` in smp's encoder table, so every smp decoder builds
on our backbone. smp passes only the table entry's ``params`` (plus depth and output stride) to an
encoder, so any other backbone option (drop path, norm layer, pretrained weights, scSE on some
taps only) goes through :func:`create_smp_model`, which builds the decoder and then gives it an
encoder built with those options.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import segmentation_models_pytorch as smp
import torch
import torch.nn as nn
from segmentation_models_pytorch.encoders import encoders as SMP_ENCODERS
from segmentation_models_pytorch.encoders._base import EncoderMixin

from ..backbone import NUM_LEVELS, EfficientNet
from ..spec import ARCHS, check_arch

__all__ = ['EffNetEncoder', 'ENCODER_NAMES', 'encoder_name', 'create_smp_model',
           'register_smp_encoders']

#: Key of the stem convolution weight, adapted when the number of input channels changes.
STEM_WEIGHT = 'stem.conv.weight'


def encoder_name(arch: str, scse: bool = False) -> str:
    """smp encoder name of ``arch``: 'effnet-b4', or 'effnet-b4-scse' with scSE on every tap."""
    return f'effnet-{check_arch(arch)}' + ('-scse' if scse else '')


def _adapt_stem_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """smp's rule for reusing trained RGB stem weights with another number of input channels."""
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    old = weight.shape[1]
    repeated = weight[:, [i % old for i in range(in_channels)]]
    return repeated * (old / in_channels)


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

    # the backbone's input checks and run-time 'same' padding are not written for TorchScript
    _is_torch_scriptable = False

    def __init__(self, arch: str = 'b0', depth: int = 5, output_stride: int = 32,
                 in_channels: int = 3, **backbone_options: Any) -> None:
        nn.Module.__init__(self)
        if not isinstance(depth, int) or not 1 <= depth <= NUM_LEVELS:
            raise ValueError(f'{type(self).__name__} depth must be 1..{NUM_LEVELS}, got {depth!r}')
        for reserved in ('out_indices', 'in_chans', 'arch'):
            if reserved in backbone_options:
                raise TypeError(f'{type(self).__name__} sets {reserved!r} itself '
                                f'(from arch, depth and in_channels); do not pass it')
        self.backbone = EfficientNet(arch=arch, out_indices=tuple(range(depth)),
                                     in_chans=in_channels, output_stride=output_stride,
                                     **backbone_options)
        # smp's EncoderMixin reads these private attributes
        self._depth = depth
        self._in_channels = in_channels
        self._output_stride = output_stride
        self._out_channels = [in_channels] + self.backbone.out_channels

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return ``[x, s2, s4, ...]`` with ``depth`` feature maps after the input."""
        return [x, *self.backbone(x)]

    def _rebuild(self, keep_stem: bool, **changes: Any) -> None:
        """Replace the backbone by one built with ``changes``, keeping the trained weights."""
        state = self.backbone.state_dict()
        backbone = EfficientNet(**{**self.backbone.config, **changes})
        if not keep_stem:
            state.pop(STEM_WEIGHT)
        backbone.load_state_dict(state, strict=keep_stem)
        self.backbone = backbone

    def set_in_channels(self, in_channels: int, pretrained: bool = True) -> None:
        """Change the input channels; trained stem weights are adapted as in smp, else redrawn."""
        if in_channels == self._in_channels:
            return
        stem = _adapt_stem_weight(self.backbone.state_dict()[STEM_WEIGHT], in_channels) \
            if pretrained else None
        self._rebuild(keep_stem=False, in_chans=in_channels)
        if stem is not None:
            self.backbone.stem.conv.weight.data.copy_(stem)
        self._in_channels = in_channels
        self._out_channels = [in_channels] + self._out_channels[1:]

    def make_dilated(self, output_stride: int) -> None:
        """Trade the deepest strides for dilation (smp calls this for DeepLab and PAN)."""
        if output_stride not in (8, 16, 32):
            raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride!r}')
        if output_stride != self.backbone.output_stride:
            # dilation changes no weight shape, so every trained weight carries over
            self._rebuild(keep_stem=True, output_stride=output_stride)
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


def create_smp_model(decoder: str = 'Unet', arch: str = 'b0', in_channels: int = 3,
                     classes: int = 1, encoder_options: Optional[Dict[str, Any]] = None,
                     **decoder_options: Any) -> nn.Module:
    """Build any smp decoder on our encoder, with any backbone option.

    Example: ``create_smp_model('Unet', 'b4', in_channels=1, classes=3,
    encoder_options=dict(scse=True, drop_path_rate=0.2))``.

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
    model = smp.create_model(decoder, encoder_name=encoder_name(arch), encoder_weights=None,
                             in_channels=in_channels, classes=classes, **decoder_options)
    if encoder_options:
        built = model.encoder
        # keep the depth and output stride the decoder chose, so its layers still fit
        model.encoder = EffNetEncoder(arch, depth=built._depth, output_stride=built._output_stride,
                                      in_channels=in_channels, **encoder_options)
    return model


register_smp_encoders()
