# The medical recipe without its data: U-Net + EfficientNet-B4 with Lite blocks (no SE, ReLU6),
# scSE on every encoder tap, ResNet-D shortcuts and BN statistics that match the evaluated
# weights (what docs/ablations.md measured to train fastest from scratch), Dice + CE, AdamW with
# warm-up and cosine decay, sized for one GPU (batch 8 of 256 x 256 crops, 4000 iterations), and
# its CPU profile.
# configs/unet_effb4_medical.py adds image folders, configs/unet_effb4_volumes.py NIfTI volumes.
_base_ = [
    './models/unet_effnet.py',
    './schedules/adamw_cosine_4k.py',
    './default_runtime.py',
    './precise_bn.py',
]

model = dict(
    arch='b4',  # classes and input channels come from the data (dataset.json, classes.txt or masks)
    # Lite blocks (EfficientNet-Lite's choice: no squeeze-and-excitation, ReLU6): from scratch
    # on timelapse-cells they ended 0.876 against 0.850 for SE + Swish in 0.9x the seconds, and
    # level on mni-tissue (docs/ablations.md section 10, docs/quality.md section 1m). ImageNet
    # weights were trained with SE and Swish: with encoder_options.pretrained set, also set
    # block_attention='se', act_layer='swish' and shortcut=None.
    encoder_options=dict(scse=True, drop_path_rate=0.2, shortcut='resnet_d',
                         block_attention=None, act_layer='relu6'),
    # validation, test.py and infer.py predict in Gaussian-weighted windows of the training crop
    # (nnU-Net's inference; the window is filled in from train_dataloader.dataset.crop_size, so
    # 128 in the CPU profile): the scSE gates average over their whole input, so a model
    # trained on crops sees other gate inputs on whole slices. On mni-subcortical the same B4
    # checkpoints scored 0.011-0.064 mFgDice more in windows, R34's 0.006 less
    # (docs/quality.md section 1i). --cfg-options model.test_cfg.mode=whole turns it off.
    test_cfg=dict(mode='slide'),
)
# the runtime's hooks plus WindowBNHook (lists replace lists when configs merge, hence the
# spread): before each validation and checkpoint, every BN's running statistics are the average
# of the batch statistics of the last 25 training iterations (fewer early in a run: at most a
# tenth of the iterations done). It replaced PreciseBN over 100 batches, whose forward passes
# were more than half of the CPU profile's training seconds: on three datasets the same or
# higher final Dice in about half the time (docs/quality.md, sections 1k and 1l). A tenth
# rather than a fifth: statistics of weights closer to the evaluated ones at early validations
# (mni-tissue, four seeds: 0.925 mean mFgDice at iteration 100 of 200 against 0.895), the same
# finals (docs/ablations.md section 12). With EMAHook (configs/_base_/ema.py) use PreciseBN
# instead: the window averages the raw weights' batches.
custom_hooks = [*_base_.custom_hooks, dict(_base_.window_bn_hook, max_fraction=0.1)]
default_hooks = dict(checkpoint=dict(interval=250, save_best='mDice', rule='greater'))

cpu_profile = dict(
    max_iters=400,
    options={
        'train_cfg.val_interval': 50,
        'default_hooks.checkpoint.interval': 100,  # a B4 checkpoint with AdamW state is ~230 MB
        'train_dataloader.batch_size': 4,
        'train_dataloader.dataset.crop_size': 128,
        # two thirds of the crops centred on a pixel of a uniformly drawn foreground class
        # (nnU-Net's 0.33 stays for the 256 px crops above): 128 px crops of a slice miss a small
        # class often enough that one run in four never learnt it at 0.33; over three real sets
        # such stalls fell from 3 of 14 runs to 1 of 14 (docs/quality.md section 1o)
        'train_dataloader.dataset.foreground_ratio': 0.66,
        # the same function, about 0.95x the seconds of the B4 U-Net step on this project's CPU
        # (docs/quality.md section 1m); on a GPU set it with --amp (bf16 / fp16 kernels prefer it)
        'model.channels_last': True,
        # with 2 cores a loader process would compete with the training threads
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
    },
)
