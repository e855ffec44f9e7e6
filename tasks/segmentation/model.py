"""``SegmentationModel``: any smp decoder on our EfficientNet encoder, as an MMEngine model."""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel

from effnet_backbones import create_smp_model
from effnet_backbones.registry import MODELS

from .padding import pad_to, padded_size
from .postprocess import keep_largest_component, largest_component_classes
from .sample import SegSample
from .sliding_window import as_window, check_overlap, sliding_window_logits
from .tta import check_flips, tta_logits
from .volume_spacing import resize_logits

__all__ = ['SegmentationModel', 'DEFAULT_TEST_CFG', 'resolve_test_cfg']

DEFAULT_LOSSES = (dict(type='effnet_backbones.DiceLoss'),
                  dict(type='effnet_backbones.CrossEntropyLoss'))

#: Prediction settings when ``test_cfg`` leaves them out: the whole image at once, as trained.
DEFAULT_TEST_CFG: Dict[str, Any] = dict(mode='whole', window=None, overlap=0.5, gaussian=True,
                                        window_batch_size=4, tta=None, largest_component=False)
TEST_MODES = ('whole', 'slide')
DEFAULT_TTA: Dict[str, Any] = dict(flips=('h', 'v'), rot90=False)


def _check_keys(given: Dict[str, Any], valid: Sequence[str], name: str) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f'{name}: unknown key {unknown[0]!r}; valid keys are {sorted(valid)}')


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f'{name} must be True or False, got {value!r}')
    return value


def resolve_test_cfg(test_cfg: Optional[Dict[str, Any]],
                     name: str = 'model.test_cfg') -> Dict[str, Any]:
    """Every prediction setting of :class:`SegmentationModel`, defaults filled in and checked.

    Args:
        test_cfg: the settings given (see the class docstring); None for the defaults.
        name: what error messages call the dict.
    """
    given = dict(test_cfg or {})
    _check_keys(given, DEFAULT_TEST_CFG, name)
    cfg = {**DEFAULT_TEST_CFG, **given}
    if cfg['mode'] not in TEST_MODES:
        raise ValueError(f"{name}.mode must be one of {list(TEST_MODES)}, got {cfg['mode']!r}")
    if cfg['window'] is not None:
        cfg['window'] = as_window(cfg['window'], f'{name}.window')
    elif cfg['mode'] == 'slide':
        raise ValueError(f"{name}.mode='slide' needs {name}.window (the training crop size, "
                         f'an int or (h, w))')
    cfg['overlap'] = check_overlap(cfg['overlap'], f'{name}.overlap')
    _check_bool(cfg['gaussian'], f'{name}.gaussian')
    size = cfg['window_batch_size']
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f'{name}.window_batch_size must be a positive int, got {size!r}')
    if cfg['tta'] is not None:
        if not isinstance(cfg['tta'], dict):
            raise ValueError(f"{name}.tta must be None or a dict with keys 'flips', 'rot90', "
                             f"got {cfg['tta']!r}")
        _check_keys(cfg['tta'], DEFAULT_TTA, f'{name}.tta')
        tta = {**DEFAULT_TTA, **cfg['tta']}
        cfg['tta'] = dict(flips=check_flips(tta['flips'], f'{name}.tta.flips'),
                          rot90=_check_bool(tta['rot90'], f'{name}.tta.rot90'))
    largest_component_classes(cfg['largest_component'], f'{name}.largest_component')
    return cfg


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
        channels_last: run the network in the channels-last memory format (weights and inputs;
            timm's ``--channels-last``): the same function (float64 outputs and gradients equal;
            float32 sums in another order), faster where the kernels prefer it (bf16 / fp16 on
            GPUs; the B4 U-Net recipe's CPU runs took about 0.95x the training seconds,
            docs/quality.md section 1m). Checkpoints are the same either way.
        test_cfg: how 'predict' mode (and :meth:`predict_logits`) predicts; every key optional,
            unknown keys are errors:

            - ``mode``: ``'whole'`` (default: the whole image in one pass) or ``'slide'``
              (windows, :func:`~tasks.segmentation.sliding_window.sliding_window_logits`).
            - ``window``: the window, an int or ``(h, w)``; needed by ``'slide'`` (typically the
              training crop size).
            - ``overlap``: fraction of a window its neighbour shares, in [0, 1); default 0.5.
            - ``gaussian``: weight window pixels by a centred Gaussian (default True).
            - ``window_batch_size``: windows per network call (default 4); bounds the memory.
            - ``tta``: None (default) or ``dict(flips=('h', 'v'), rot90=False)``: average the
              logits over every combination of the flips (and with ``rot90`` the 90/180/270
              degree rotations), see :func:`~tasks.segmentation.tta.tta_logits`.
            - ``largest_component``: True, or a list of class indices: keep only each (listed)
              class's largest connected component of the predicted map (default False).

            The default predicts exactly as ``self.logits`` does; 'loss' and 'tensor' modes never
            use these settings.
    """

    def __init__(self, decoder: str = 'Unet', arch: str = 'b0', in_channels: Optional[int] = 3,
                 num_classes: Optional[int] = 2, out_channels: Optional[int] = None,
                 encoder_options: Optional[Dict[str, Any]] = None,
                 decoder_options: Optional[Dict[str, Any]] = None,
                 losses: Sequence[Dict[str, Any]] = DEFAULT_LOSSES, ignore_index: int = 255,
                 threshold: float = 0.5,
                 data_preprocessor: Optional[Dict[str, Any]] = None,
                 channels_last: bool = False,
                 test_cfg: Optional[Dict[str, Any]] = None,
                 init_cfg: Optional[Dict[str, Any]] = None) -> None:
        # checked first: a typo in a prediction setting should not wait for a network build
        resolved_test_cfg = resolve_test_cfg(test_cfg)
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
        self.test_cfg = resolved_test_cfg
        self.net = self.build_network(decoder, arch, in_channels, out_channels,
                                      dict(encoder_options or {}), dict(decoder_options or {}))
        self.channels_last = channels_last
        if channels_last:  # before any optimiser exists: it must see the parameters' final layout
            self.net.to(memory_format=torch.channels_last)
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
        if self.channels_last:
            padded = padded.contiguous(memory_format=torch.channels_last)
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

    def predict_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, out_channels, H, W)`` as ``test_cfg`` says: :meth:`logits` on the whole
        image or window by window, averaged over the TTA views (each view slid over)."""
        cfg = self.test_cfg
        predict: Callable[[torch.Tensor], torch.Tensor] = self.logits
        if cfg['mode'] == 'slide':
            predict = partial(sliding_window_logits, self.logits, window=cfg['window'],
                              overlap=cfg['overlap'], gaussian=cfg['gaussian'],
                              window_batch_size=cfg['window_batch_size'])
        if cfg['tta'] is not None:
            return tta_logits(predict, inputs, **cfg['tta'])
        return predict(inputs)

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[SegSample]] = None) -> List[SegSample]:
        """Samples with ``pred_mask`` set, cropped to each image's own size (and with
        ``test_cfg.largest_component``, only each class's largest component kept)."""
        if data_samples is None:
            size = tuple(inputs.shape[-2:])
            data_samples = [SegSample(img_path='', img_shape=size) for _ in range(len(inputs))]
        labels = [self._label_map(logits, sample)
                  for sample, logits in zip(data_samples, self._batch_logits(inputs, data_samples))]
        classes = largest_component_classes(self.test_cfg['largest_component'])
        if classes != []:
            labels = [torch.from_numpy(keep_largest_component(label.cpu().numpy(), classes))
                      .to(label.device) for label in labels]
        return [replace(sample, pred_mask=label) for sample, label in zip(data_samples, labels)]

    def _batch_logits(self, inputs: torch.Tensor,
                      data_samples: List[SegSample]) -> Sequence[torch.Tensor]:
        """Logits ``(K, H, W)`` of each image of a padded batch. Windows and flipped views would
        see the batch padding as image (and flipped to the top left, where training never put
        it): with either, images smaller than the batch are predicted alone, at their own size."""
        size = tuple(inputs.shape[-2:])
        tricks = self.test_cfg['mode'] != 'whole' or self.test_cfg['tta'] is not None
        if not tricks or all(tuple(sample.img_shape) == size for sample in data_samples):
            return self.predict_logits(inputs)
        return [self.predict_logits(image[None, :, :height, :width])[0]
                for image, (height, width) in zip(inputs, (s.img_shape for s in data_samples))]

    def _label_map(self, logits: torch.Tensor, sample: SegSample) -> torch.Tensor:
        """One image's class map: its logits cropped to its own size and, for a slice resampled
        to the training spacing, resized back to ``ori_shape`` before the argmax."""
        logits = logits[None, :, :sample.img_shape[0], :sample.img_shape[1]]
        if sample.ori_shape is not None:
            logits = resize_logits(logits, sample.ori_shape)
        return self.labels(logits)[0]
