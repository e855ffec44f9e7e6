# Progressive compound training in one run: the medical U-Net recipe (scSE taps, ResNet-D
# shortcuts, BN statistics of the last iterations) trained as B0 at 160 px, grown into B2 at
# 192 px, then into B4 at the recipe's 256 px. Resolution grows with the variant (EfficientNet's
# 224 / 260 / 380 px, scaled to the recipe's 256 px final crop and rounded to multiples of 32).
# At each boundary the model grows in place (tasks/engine/progressive.py): every output is
# unchanged at that moment, the optimiser state of the old weights carries over, and the learning
# rate re-warms. The log and training_curves.json count training FLOPs. See docs/transplant.md.
#
#   python tools/train.py configs/grow/unet_progressive_b0_b4.py [--data-root DIR]
#
# mode='net2wider' instead makes every new channel a copy of an old one (the whole function is
# kept, new channels included); 'exact' keeps the old channels' function and starts new ones
# random with zero influence.
_base_ = ['../unet_effb4_medical.py']

progressive = dict(
    mode='exact',
    rewarm=dict(iters=100, start_factor=0.1),
    phases=[
        dict(arch='b0', iters=2000, crop_size=160, model=dict(encoder_options=dict(drop_path_rate=0.1))),
        dict(arch='b2', iters=1000, crop_size=192, model=dict(encoder_options=dict(drop_path_rate=0.15))),
        dict(arch='b4', iters=1000, crop_size=256, model=dict(encoder_options=dict(drop_path_rate=0.2))),
    ],
)

# the CPU run: 400 iterations in the same shares, crops as the B4 recipe's CPU profile scales them
cpu_profile = dict(
    max_iters=400,
    options={
        **_base_.cpu_profile['options'],
        'progressive.rewarm.iters': 10,
        'progressive.phases': [
            dict(arch='b0', iters=200, crop_size=96, model=dict(encoder_options=dict(drop_path_rate=0.1))),
            dict(arch='b2', iters=100, crop_size=96, model=dict(encoder_options=dict(drop_path_rate=0.15))),
            dict(arch='b4', iters=100, crop_size=128, model=dict(encoder_options=dict(drop_path_rate=0.2))),
        ],
    },
)
