# Growing recipe, stage 3 of 3: B4 grown from stage 2's best B2, at B4's resolution (380 px).
_base_ = ['./unet_grow_b2.py']

model = dict(arch='b4', encoder_options=dict(drop_path_rate=0.2))
train_dataloader = dict(dataset=dict(crop_size=380))  # spec.SCALING['b4'].resolution
init_from = dict(type='transplant', checkpoint='work_dirs/unet_grow_b2')  # its best_*.pth
