# U-Net + EfficientNet-B4 with scSE on every encoder tap, Dice + CE, AdamW with warm-up and cosine
# decay: medical image segmentation, sized for one GPU (batch 8 of 256 x 256 crops, 4000 iters).
# Trained from scratch it uses what docs/ablations.md measured to train fastest: ResNet-D shortcuts
# on the blocks without a skip (every block residual) and PreciseBN (BN statistics recomputed
# before each validation and checkpoint), which reach the old recipe's final validation Dice in a
# quarter to half of its iterations. ImageNet weights have no such shortcuts: with
# encoder_options.pretrained set, also set shortcut=None (loading names the missing tensors).
#
#   python tools/train.py configs/unet_effb4_medical.py                  # demo nuclei data
#   python tools/train.py configs/unet_effb4_medical.py --data-root DIR  # your data
#
# Without CUDA the cpu_profile below applies (printed at start), so the same command finishes on
# a CPU in minutes.
_base_ = [
    './_base_/models/unet_effnet.py',
    './_base_/datasets/medical_folder.py',
    './_base_/schedules/adamw_cosine_4k.py',
    './_base_/default_runtime.py',
    './_base_/precise_bn.py',
]

model = dict(
    arch='b4',  # classes and input channels come from the data (dataset.json, classes.txt or masks)
    encoder_options=dict(scse=True, drop_path_rate=0.2, shortcut='resnet_d'),
)
# the runtime's hooks plus PreciseBN (lists replace lists when configs merge, hence the spread)
custom_hooks = [*_base_.custom_hooks, _base_.precise_bn_hook]
default_hooks = dict(checkpoint=dict(interval=250, save_best='mDice', rule='greater'))

cpu_profile = dict(
    max_iters=400,
    options={
        'train_cfg.val_interval': 50,
        'default_hooks.checkpoint.interval': 100,  # a B4 checkpoint with AdamW state is ~230 MB
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
