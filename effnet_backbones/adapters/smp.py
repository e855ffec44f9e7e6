"""segmentation-models-pytorch encoder adapter: ``smp.Unet('effnet-b4', encoder_weights=None)``.

Importing this module registers ``effnet-b0`` ... ``effnet-b7`` and the scSE variants
``effnet-b0-scse`` ... ``effnet-b7-scse`` in smp's encoder table, so every smp decoder builds
on our backbone. smp passes only the table entry's ``params`` (plus depth and output stride) to an
encoder, so other backbone options (drop path, norm layer, pretrained weights, scSE on some taps
only) go through :func:`create_smp_model`, which hands them to smp's own encoder construction:
the backbone is built once, with its final options.
"""
from __future__ import annotations

import collections.abc
import contextlib
from typing import Any, Dict, Iterator, List, Mapping, Optional

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

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
                        assign: bool = False) -> Any:
        """Load our own encoder state, or a torchvision / timm EfficientNet checkpoint.

        smp loads its ``encoder_weights='imagenet'`` download with this call; a foreign
        checkpoint goes through :func:`effnet_backbones.load_pretrained`, after the backbone
        takes the padding and BN settings the weights were made with (TF ports: 'same', 1e-3).
        """
        if all(key.startswith('backbone.') for key in state_dict):
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        from ..weights import Checkpoint, load_pretrained, recognise_layout, settings_of

        timm_keys = recognise_layout(list(state_dict)) == 'timm'
        source = IMAGENET_SOURCE[self.backbone.arch] if timm_keys else 'auto'
        ckpt = Checkpoint(name='<smp encoder weights>', state_dict=dict(state_dict),
                          hint=source if source != 'auto' else None)
        settings = settings_of(ckpt, source, self.backbone.arch)
        self.backbone.set_padding(settings.get('padding', self.backbone.padding))
        self.backbone.set_norm_args(settings.get('norm_eps'), settings.get('norm_momentum'))
        return load_pretrained(self.backbone, ckpt, source=source, strict=strict)

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


#: smp's default ``encoder_weights='imagenet'``: timm's ImageNet checkpoints on the Hugging Face
#: hub (plain timm ports for b0-b5; b6 and b7 exist only as TF ports, 'same' padding, BN eps 1e-3).
IMAGENET_WEIGHTS: Dict[str, str] = {
    'b0': 'efficientnet_b0.ra_in1k', 'b1': 'efficientnet_b1.ft_in1k',
    'b2': 'efficientnet_b2.ra_in1k', 'b3': 'efficientnet_b3.ra2_in1k',
    'b4': 'efficientnet_b4.ra2_in1k', 'b5': 'efficientnet_b5.sw_in12k_ft_in1k',
    'b6': 'tf_efficientnet_b6.aa_in1k', 'b7': 'tf_efficientnet_b7.aa_in1k',
}
HUB_URL = 'https://huggingface.co/{repo_id}'
#: The source of each variant's registered weights (timm's keys do not tell a TF port).
IMAGENET_SOURCE = {arch: 'timm_tf' if name.startswith('tf_') else 'timm'
                   for arch, name in IMAGENET_WEIGHTS.items()}


class _PretrainedSettings(collections.abc.Mapping):
    """smp's ``pretrained_settings`` of one encoder: ``{'imagenet': {'repo_id', 'revision', ...}}``.

    smp looks the entry up, then downloads ``config.json`` and ``model.safetensors`` from
    ``repo_id`` with ``hf_hub_download`` and calls the encoder's ``load_state_dict``. Looking the
    entry up here fetches both files first (smp then finds them in the hub cache), so that an
    offline machine gets an error that names the files and how to pass them instead.
    """

    def __init__(self, arch: str) -> None:
        self._settings = {'imagenet': dict(
            repo_id=f'timm/{IMAGENET_WEIGHTS[arch]}', revision='main', source=IMAGENET_SOURCE[arch],
            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))}

    def __getitem__(self, key: str) -> Dict[str, Any]:
        settings = self._settings[key]
        _fetch_or_explain(settings['repo_id'], settings['revision'])
        return settings

    def __contains__(self, key: object) -> bool:
        # smp asks `weights in settings` before it reads the entry: only reading it fetches
        return key in self._settings

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings)

    def __len__(self) -> int:
        return len(self._settings)


def _fetch_or_explain(repo_id: str, revision: str) -> None:
    """Download (or find in the hub cache) the two files smp reads, or say how to do without."""
    from huggingface_hub import hf_hub_download

    from ..weights import WeightsError

    for filename in ('config.json', 'model.safetensors'):
        try:
            hf_hub_download(repo_id, filename=filename, revision=revision)
        except Exception as err:  # no network, offline mode, proxy: many error types
            raise WeightsError(
                f"could not fetch the ImageNet weights of this encoder, {HUB_URL.format(repo_id=repo_id)}"
                f"/resolve/{revision}/{filename} ({type(err).__name__}: {err}). Offline, download "
                f"model.safetensors from that page on a networked machine and build the model with "
                f"encoder_weights=None, then load it: effnet_backbones.load_pretrained("
                f"model.encoder.backbone, 'model.safetensors', source='auto'), or use "
                f"create_smp_model(..., encoder_options=dict(pretrained='model.safetensors'))") from err


def _registry_entry(arch: str, scse: bool) -> Dict[str, Any]:
    return {
        'encoder': EffNetEncoder,
        'pretrained_settings': _PretrainedSettings(arch),
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
