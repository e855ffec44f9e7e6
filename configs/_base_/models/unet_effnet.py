# U-Net (smp) on an EfficientNet encoder, Dice + cross-entropy. The variant is set by the configs
# that use it; channels and classes come from the data.
model = dict(
    type='effnet_backbones.SegmentationModel',
    decoder='Unet',
    arch='b0',
    in_channels=None,  # None: the datasets' (from the data)
    num_classes=None,  # None: len(classes) of the datasets (from the data)
    encoder_options=dict(scse=False, drop_path_rate=0.1),
    decoder_options=dict(decoder_channels=(256, 128, 64, 32, 16)),
    losses=[
        dict(type='effnet_backbones.DiceLoss', weight=1.0),
        dict(type='effnet_backbones.CrossEntropyLoss', weight=1.0),
    ],
    ignore_index=255,
    data_preprocessor=dict(type='effnet_backbones.SegDataPreprocessor', size_divisor=32),
)
