# Growing recipe, stage 2 of 3: B2 grown from stage 1's best B0, at B2's resolution (260 px).
# The grown model starts out predicting exactly what the B0 predicted; its new channels and
# blocks then learn. Half of stage 1's schedule, from a lower peak learning rate.
_base_ = ['./unet_grow_b0.py']

model = dict(arch='b2', encoder_options=dict(drop_path_rate=0.2))
train_dataloader = dict(dataset=dict(crop_size=260))  # spec.SCALING['b2'].resolution
init_from = dict(type='transplant', checkpoint='work_dirs/unet_grow_b0')  # its best_*.pth
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_iters=2000, val_interval=250)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=100, end=2000),
]
