# RMSprop the TF-EfficientNet way (Tan & Le 2019; timm's RMSpropTF: epsilon inside the square
# root, learning rate inside the momentum buffer): decay (alpha) 0.9, momentum 0.9, eps 1e-3,
# L2 weight decay 1e-5 on everything but the norm layers (TF skipped batch_normalization
# variables). TF's lr is 0.016 per 256 images; scaled linearly to the batch of 8 the GPU recipes
# use: 0.016 * 8 / 256 = 5e-4. The CPU profiles train with batch 4 and keep this lr unless
# auto_scale_lr.enable=True (then lr * batch / 8). Warm-up and cosine decay as adamw_cosine_4k.py,
# so the two schedules differ in the optimiser only (the schedule is inherited); clip_grad as there.
# Needs tasks.engine imported (the dataset bases' custom_imports do it): it registers the type.
_base_ = ['./adamw_cosine_4k.py']

optim_wrapper = dict(
    _delete_=True,  # replace AdamW's optimiser dict instead of merging into its keys
    type='OptimWrapper',
    # fused (or multi-tensor) steps and clipping, equal paramwise groups merged: same updates
    constructor='effnet_backbones.FastOptimWrapperConstructor',
    optimizer=dict(type='effnet_backbones.RMSpropTF', lr=5e-4, alpha=0.9, eps=1e-3, momentum=0.9,
                   weight_decay=1e-5),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0),
)
auto_scale_lr = dict(enable=False, base_batch_size=8)
