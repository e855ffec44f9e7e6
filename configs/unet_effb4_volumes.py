# The medical recipe (configs/_base_/medical_unet_b4.py: U-Net + EfficientNet-B4, scSE taps,
# ResNet-D shortcuts, BN statistics of the last iterations, Dice + CE, AdamW with warm-up and
# cosine) on NIfTI volumes in the nnU-Net v2 / Decathlon layout, trained as 2-D slices;
# validation Dice per case, in 3-D.
#
#   python tools/check_data.py DATA_ROOT
#   python tools/train.py configs/unet_effb4_volumes.py --data-root DATA_ROOT
#   python tools/test.py WORK_DIR/unet_effb4_volumes.py CKPT --data-root DATA_ROOT [--tta]
#   python tools/infer.py WORK_DIR/unet_effb4_volumes.py CKPT case_0000.nii.gz --out-dir OUT
#
# (configs/unet_effb4_medical.py --data-root DATA_ROOT also switches to these datasets by itself
# when DATA_ROOT holds imagesTr/.)
_base_ = [
    './_base_/medical_unet_b4.py',
    './_base_/datasets/medical_volumes.py',
]

# validating every case in 3-D costs more than a folder of slices: validate and keep less often
cpu_profile = dict(options={'train_cfg.val_interval': 100,
                            'default_hooks.checkpoint.interval': 200})
