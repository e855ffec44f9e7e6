# Quick experiments: U-Net + EfficientNet-B0 (no scSE), 128 x 128 crops, 600 iterations.
# The schedule's warm-up, cosine decay and intervals shrink with it.
_base_ = [
    './_base_/models/unet_effnet.py',
    './_base_/datasets/medical_folder.py',
    './_base_/schedules/adamw_cosine_4k.py',
    './_base_/default_runtime.py',
]

model = dict(arch='b0',
             decoder_options=dict(decoder_channels=(128, 64, 32, 16, 16)))
train_cfg = dict(max_iters=600, val_interval=100)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=30, end=600),
]
train_dataloader = dict(batch_size=8, num_workers=2, dataset=dict(crop_size=128))
default_hooks = dict(checkpoint=dict(interval=100, save_best='mDice', rule='greater'),
                     logger=dict(interval=10))
