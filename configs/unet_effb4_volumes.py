# The medical recipe (configs/unet_effb4_medical.py: U-Net + EfficientNet-B4, scSE taps, ResNet-D
# shortcuts, PreciseBN, Dice + CE, AdamW with warm-up and cosine) on NIfTI volumes in the nnU-Net
# v2 / Decathlon layout, trained as 2-D slices; validation Dice per case, in 3-D.
#
#   python tools/check_data.py DATA_ROOT
#   python tools/train.py configs/unet_effb4_volumes.py --data-root DATA_ROOT
#   python tools/test.py configs/unet_effb4_volumes.py CKPT --data-root DATA_ROOT [--tta]
#   python tools/infer.py configs/unet_effb4_volumes.py CKPT case_0000.nii.gz --out-dir OUT
#
# The model and hooks are the medical recipe's (tests/configs check that they stay equal);
# configs/unet_effb4_medical.py --data-root DATA_ROOT also switches to these datasets by itself
# when DATA_ROOT holds imagesTr/.
_base_ = [
    './_base_/models/unet_effnet.py',
    './_base_/datasets/medical_volumes.py',
    './_base_/schedules/adamw_cosine_4k.py',
    './_base_/default_runtime.py',
    './_base_/precise_bn.py',
]

model = dict(
    arch='b4',  # classes and input channels come from dataset.json
    encoder_options=dict(scse=True, drop_path_rate=0.2, shortcut='resnet_d'),
)
custom_hooks = [*_base_.custom_hooks, _base_.precise_bn_hook]
default_hooks = dict(checkpoint=dict(interval=250, save_best='mDice', rule='greater'))

cpu_profile = dict(
    max_iters=400,
    options={
        'train_cfg.val_interval': 100,
        'default_hooks.checkpoint.interval': 200,  # a B4 checkpoint with AdamW state is ~230 MB
        'train_dataloader.batch_size': 4,
        'train_dataloader.dataset.crop_size': 128,
        # with 2 cores a loader process would compete with the training threads
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
    },
)
