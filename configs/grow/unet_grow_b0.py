# Growing recipe, stage 1 of 3: U-Net + EfficientNet-B0 at B0's resolution (224 px crops).
# Stage 2 (unet_grow_b2.py) grows this run's best checkpoint into B2, stage 3 into B4; each stage
# trains at its variant's own resolution (224, 260, 380 px). See docs/transplant.md.
#
#   python tools/train.py configs/grow/unet_grow_b0.py [--data-root DIR]
#   python tools/train.py configs/grow/unet_grow_b2.py [--data-root DIR]
#   python tools/train.py configs/grow/unet_grow_b4.py [--data-root DIR]
#
# Settings that change what a layer computes (padding, activation, norm layer and eps, scSE on
# the taps, decoder) must stay the same across stages; transplanting refuses otherwise.
_base_ = [
    '../_base_/models/unet_effnet.py',
    '../_base_/datasets/medical_folder.py',
    '../_base_/schedules/adamw_cosine_4k.py',
    '../_base_/default_runtime.py',
]

model = dict(arch='b0',
             encoder_options=dict(scse=False, drop_path_rate=0.1))
train_dataloader = dict(dataset=dict(crop_size=224))  # spec.SCALING['b0'].resolution
default_hooks = dict(checkpoint=dict(interval=250, save_best='mDice', rule='greater'))
