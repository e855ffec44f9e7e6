# EfficientDet-D0 on COCO-format data: the paper's 512 px input (letterboxed), BiFPN 64 x 3,
# backbone B0 (set pretrained=True for ImageNet weights), SGD + cosine; sized for one GPU.
#
#   python tools/train.py configs/efficientdet/efficientdet_d0_coco.py --data-root DIR
#
# The D1 ... D7 configs change the variant, the input side and the batch (docs/detection.md).
_base_ = [
    '../_base_/models/efficientdet.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/sgd_cosine_180k.py',
    '../_base_/default_runtime.py',
]

variant = 'd0'
img_size = 512
batch_size = 16
model = dict(variant=variant)
train_dataloader = dict(batch_size=batch_size, dataset=dict(img_size=img_size))
val_dataloader = dict(dataset=dict(img_size=img_size))
test_dataloader = val_dataloader
# effdet's recipe (lr 0.08 at batch 64 for 300 epochs) scaled to this batch; clip as effdet (10)
optim_wrapper = dict(optimizer=dict(lr=0.02, weight_decay=4e-5), clip_grad=dict(max_norm=10.0))
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(checkpoint=dict(interval=10000, save_best='coco/bbox_mAP', rule='greater'),
                     logger=dict(interval=50))

# Without CUDA (printed at start): a CPU-sized run of the same recipe on a small COCO folder.
cpu_profile = dict(
    max_iters=300,
    options={
        'train_cfg.val_interval': 100,
        'default_hooks.checkpoint.interval': 100,
        'default_hooks.logger.interval': 10,
        'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.dataset.img_size': 384,
        'val_dataloader.batch_size': 2,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'val_dataloader.dataset.img_size': 384,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'test_dataloader.dataset.img_size': 384,
    },
)
