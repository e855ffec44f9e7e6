# RetinaNet + EfficientNet-B3 (ImageNet weights, torchvision) + FPN P3-P7 on COCO-format data,
# sized for one GPU: batch 8 of 896 x 896 letterboxed images, 180k iterations (about 12 epochs of
# COCO train2017), SGD + cosine.
#
#   python tools/train.py configs/retinanet_effb3_fpn_coco.py --data-root DIR
#
# DIR holds train.json, val.json and images/ (docs/detection.md shows how to point it at
# COCO's own annotations/ and train2017/ folders instead).
_base_ = [
    './_base_/models/retinanet_effnet_fpn.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/sgd_cosine_180k.py',
    './_base_/default_runtime.py',
]

model = dict(
    backbone=dict(arch='b3', pretrained=True, drop_path_rate=0.2, frozen_stages=1),
)
default_hooks = dict(checkpoint=dict(interval=10000, save_best='coco/bbox_mAP', rule='greater'),
                     logger=dict(interval=50))

# Without CUDA (printed at start): a CPU-sized run of the same recipe, for trying it on a small
# COCO-format folder; --max-iters N rescales it. Real COCO training needs a GPU.
cpu_profile = dict(
    max_iters=300,
    options={
        'train_cfg.val_interval': 100,
        'default_hooks.checkpoint.interval': 100,
        'default_hooks.logger.interval': 10,
        'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.dataset.img_size': 512,
        'val_dataloader.batch_size': 2,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'val_dataloader.dataset.img_size': 512,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'test_dataloader.dataset.img_size': 512,
    },
)
