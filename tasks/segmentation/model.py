"""``SegmentationModel``: any smp decoder on our EfficientNet encoder, as an MMEngine model."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel

from effnet_backbones import create_smp_model
from effnet_backbones.registry import MODELS

from .padding import pad_to, padded_size
from .sample import SegSample

__all__ = ['SegmentationModel']

DEFAULT_LOSSES = (dict(type='effnet_backbones.DiceLoss'),
                  dict(type='effnet_backbones.CrossEntropyLoss'))


class SegmentationModel(BaseModel):
    """An smp decoder (U-Net by default) over :class:`~effnet_backbones.EffNetEncoder`.

    Inputs of any size work: the network sees them padded to a multiple of its output stride and
    every output is cropped back, in all three modes (MMEngine's 'loss', 'predict', 'tensor').

    Args:
        decoder: smp architecture: 'Unet', 'UnetPlusPlus', 'FPN', 'DeepLabV3Plus', ...
        arch: encoder variant, 'b0' ... 'b7'.
        in_channels: image channels.
        num_classes: classes in the masks, background included.
        out_channels: logits per pixel; default ``num_classes``. 1 with ``num_classes=2`` makes a
            binary sigmoid model (use BCELoss and/or DiceLoss).
        encoder_options: :class:`~effnet_backbones.EfficientNet` options (``scse``,
            ``drop_path_rate``, ``pretrained`` ...).
        decoder_options: the smp model's own arguments (``decoder_channels``,
            ``decoder_attention_type``, ``encoder_output_stride`` ...).
        losses: loss configs, summed (each logged under its own name).
        ignore_index: mask value that is not learned from (and fills batch padding).
        threshold: binary models: probability above which a pixel is foreground.
        data_preprocessor: batching config, see :class:`SegDataPreprocessor`.
    """

    def __init__(self, decoder: str = 'Unet', arch: str = 'b0', in_channels: Optional[int] = 3,
                 num_classes: Optional[int] = 2, out_channels: Optional[int] = None,
                 encoder_options: Optional[Dict[str, Any]] = None,
                 decoder_options: Optional[Dict[str, Any]] = None,
                 losses: Sequence[Dict[str, Any]] = DEFAULT_LOSSES, ignore_index: int = 255,
                 threshold: float = 0.5,
                 data_preprocessor: Optional[Dict[str, Any]] = None,
                 init_cfg: Optional[Dict[str, Any]] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='effnet_backbones.SegDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if num_classes is None or in_channels is None:
            raise ValueError('SegmentationModel needs num_classes and in_channels; configs leave '
                             'them None to take them from the data, which tasks.engine.'
                             'prepare_train_config (or resolve_from_data(cfg)) fills in')
        out_channels = num_classes if out_channels is None else out_channels
        if num_classes < 2 or out_channels not in (1, num_classes) or \
                (out_channels == 1 and num_classes != 2):
            raise ValueError(f'num_classes counts classes with background (>= 2); out_channels '
                             f'must be num_classes, or 1 for a binary model with num_classes=2; '
                             f'got num_classes={num_classes}, out_channels={out_channels}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.threshold = threshold
        self.net = self.build_network(decoder, arch, in_channels, out_channels,
                                      dict(encoder_options or {}), dict(decoder_options or {}))
        self.losses = nn.ModuleList(MODELS.build(cfg) for cfg in losses)
        if not len(self.losses):
            raise ValueError('losses is empty; list at least one, e.g. '
                             "[dict(type='effnet_backbones.DiceLoss')]")

    def build_network(self, decoder: str, arch: str, in_channels: int, out_channels: int,
                      encoder_options: Dict[str, Any], decoder_options: Dict[str, Any]) -> nn.Module:
        """The network mapping images to logits (``self.net``); subclasses may build another."""
        return create_smp_model(decoder, arch, in_channels=in_channels, classes=out_channels,
                                encoder_options=encoder_options, **decoder_options)

    @property
    def size_divisor(self) -> int:
        """Input sides must be multiples of this for the smp network (its output stride)."""
        return self.net.encoder.output_stride

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(N, out_channels, H, W)`` for inputs of any ``H, W``."""
        size = inputs.shape[-2:]
        padded = pad_to(inputs, padded_size(size, self.size_divisor), 0.0)
        return self.net(padded)[..., :size[0], :size[1]]

    def labels(self, logits: torch.Tensor) -> torch.Tensor:
        """Class index per pixel ``(N, H, W)``."""
        if logits.shape[1] == 1:
            return (logits[:, 0].sigmoid() > self.threshold).long()
        return logits.argmax(1)

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List[SegSample]] = None,
                mode: str = 'tensor'
                ) -> Union[torch.Tensor, Dict[str, torch.Tensor], List[SegSample]]:
        """MMEngine entry point: 'loss' -> dict of losses, 'predict' -> samples with ``pred_mask``,
        'tensor' -> logits."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.logits(inputs)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, inputs: torch.Tensor, data_samples: List[SegSample]) -> Dict[str, torch.Tensor]:
        """Every configured loss on the batch; padding and ignore pixels are excluded."""
        missing = [sample.img_path for sample in data_samples if sample.gt_mask is None]
        if missing:
            raise ValueError(f'training needs masks; none for {missing[:3]}')
        target = torch.stack([pad_to(sample.gt_mask, inputs.shape[-2:], self.ignore_index)
                              for sample in data_samples])
        self._check_target(target, data_samples)
        logits = self.logits(inputs)
        return {loss.loss_name: loss(logits, target) for loss in self.losses}

    def _check_target(self, target: torch.Tensor, data_samples: List[SegSample]) -> None:
        """Mask values the model has no output for would crash the losses (on CUDA, obscurely)."""
        valid = target[target != self.ignore_index]
        if valid.numel() and int(valid.max()) >= self.num_classes:
            raise ValueError(f'masks hold class {int(valid.max())} but model.num_classes is '
                             f'{self.num_classes}; make num_classes match the dataset classes '
                             f'(batch: {[sample.img_path for sample in data_samples]})')

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[SegSample]] = None) -> List[SegSample]:
        """Samples with ``pred_mask`` set, cropped to each image's own size."""
        labels = self.labels(self.logits(inputs))
        if data_samples is None:
            size = tuple(inputs.shape[-2:])
            data_samples = [SegSample(img_path='', img_shape=size) for _ in range(len(inputs))]
        return [replace(sample, pred_mask=label[:sample.img_shape[0], :sample.img_shape[1]])
                for sample, label in zip(data_samples, labels)]
