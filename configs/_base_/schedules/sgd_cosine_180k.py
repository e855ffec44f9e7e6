# SGD with momentum, 1000 iterations of linear warm-up, cosine decay to 180k iterations: about
# 12 COCO epochs at batch 8 (MMDetection's 1x). Cosine rather than steps so that --max-iters N
# stretches the whole schedule. Norm layers get no weight decay.
optim_wrapper = dict(
    type='OptimWrapper',
    # fused (or multi-tensor) steps and clipping, equal paramwise groups merged: same updates
    constructor='effnet_backbones.FastOptimWrapperConstructor',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=dict(max_norm=35.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', eta_min=1e-4, by_epoch=False, begin=1000, end=180000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=180000, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# lr 0.01 is for a total batch of 8; `auto_scale_lr.enable=True` rescales it for other batches
auto_scale_lr = dict(enable=False, base_batch_size=8)
