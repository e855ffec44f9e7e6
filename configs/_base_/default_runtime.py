# Runtime shared by every task: hooks, logging, seeds, environment. Task configs add
# `save_best` to the checkpoint hook and their `custom_imports`.
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # last checkpoints rotate (max_keep_ckpts); the best one is kept apart by save_best.
    # SafeCheckpointHook: atomic writes, old files removed only after the new one is on disk
    checkpoint=dict(type='effnet_backbones.SafeCheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=2,
                    save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [
    dict(type='effnet_backbones.NanLossGuardHook'),  # stop with the iteration on a NaN loss
    dict(type='effnet_backbones.TrainingCurvesHook'),  # training_curves.png in the work dir
    dict(type='effnet_backbones.TrainingFlopsHook'),  # cumulative training FLOPs, logged as tflops
]
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
log_processor = dict(by_epoch=False, window_size=20)
log_level = 'INFO'
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
randomness = dict(seed=42, deterministic=False)
load_from = None
resume = False
# CPU only: 'caching' serves tensors from freed blocks of this process (best fit, split and
# merged) and unmaps cached pages before the memory held would pass the live peak, so peak RSS
# follows live memory and steps get faster (memory-efficient B0: 0.44x timm's step memory at
# 0.86x its time; docs/benchmarks.md, "A caching CPU allocator"); compiled on first use, glibc's
# allocator where no C++ compiler is found. 'lean': glibc thresholds, the same memory at
# 1.4-2.7x the time; 'default': glibc as it is. Medical recipe, mni-tissue, 200 iterations:
# 77.0 s against 83.3 s of training, the same Dice
cpu_allocator = 'caching'
# CPU only: entries in oneDNN's kernel caches (default 1024). An EfficientNet's training step and
# a validation at other shapes need more; with 1024 every step after a validation rebuilds
# kernels (the detection recipe: 94-98 s against 83 s for 600 iterations, docs/benchmarks.md,
# "Kernel cache"). None leaves oneDNN's default; ONEDNN_PRIMITIVE_CACHE_CAPACITY, if set, wins.
cpu_kernel_cache = 4096
