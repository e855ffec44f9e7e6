# AdamW, 200 iterations of linear warm-up, then cosine decay to 4000 iterations.
# --max-iters N stretches every iteration count here (and the val/checkpoint intervals) to N.
optim_wrapper = dict(
    type='OptimWrapper',
    # fused (or multi-tensor) steps and clipping, equal paramwise groups merged: same updates
    constructor='effnet_backbones.FastOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=dict(max_norm=5.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=200, end=4000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=4000, val_interval=250)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
