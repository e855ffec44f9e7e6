# The detection demo recipe's data and schedule, shared by every detector's demo config: the
# embedded nuclei set (tasks/detection/demo_data: 4 train tiles, 95 nuclei; 2 val tiles, 33),
# random 128 px crops with scale jitter, flips and rotations, AdamW
# 2e-3 with 40 warm-up iterations and cosine decay over 600 iterations of batch 2 (a CPU run of
# minutes), with PreciseBN (BN statistics recomputed before each validation and checkpoint: with
# BN momentum 0.01 in EfficientDet's BiFPN and heads, running statistics can lag the weights so
# far that the last validation of a 600-iteration run fell from 0.48 to 0.02 mAP; recomputed,
# 0.32). A demo config adds its model.
_base_ = [
    './datasets/coco_detection.py',
    './schedules/adamw_cosine_4k.py',
    './default_runtime.py',
    './precise_bn.py',
]
custom_hooks = [*_base_.custom_hooks, _base_.precise_bn_hook]

data_root = '{{ fileDirname }}/../../tasks/detection/demo_data'
# classes (train.json's categories) and channels (the images') come from the data, and so does
# the input scale: img_scale='auto' enlarges sets whose median box side is below the smallest
# anchors (16 px) to about the demo nuclei's 24 px (2x for 13 px cells; 1.0 for the demo itself)
nuclei = dict(data_root=data_root,
              normalize=dict(_delete_=True, mode='minmax', percentiles=(0.5, 99.8)), img_size=None,
              img_scale='auto', verify='full')

train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    dataset=dict(**nuclei, scale_jitter=None, pipeline=[
        dict(type='RandomScale', scale_limit=(-0.2, 0.25), p=1.0),
        # crops of 128, a multiple of P7's stride: batches reach the detectors unpadded, as the
        # validation tiles nearly do (120 x 256 -> 128 x 256). With 160 px crops (padded to
        # 256 x 256) the detectors learnt a zero border: their validation mAP was 0.26-0.27, and
        # 0.43 for the same weights with the tiles padded to 256 too (docs/detection.md)
        dict(type='RandomCrop', height=128, width=128, pad_if_needed=True, pad_position='random'),
        dict(type='HorizontalFlip', p=0.5),
        dict(type='VerticalFlip', p=0.5),
        dict(type='RandomRotate90', p=0.5),
        dict(type='RandomBrightnessContrast', brightness_limit=0.2, contrast_limit=0.2, p=0.5),
    ]),
)
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=nuclei)
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2e-3))
train_cfg = dict(max_iters=600, val_interval=200)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=40, end=600),
]
default_hooks = dict(checkpoint=dict(interval=200, save_best='coco/bbox_mAP_50', rule='greater'),
                     logger=dict(interval=20))
