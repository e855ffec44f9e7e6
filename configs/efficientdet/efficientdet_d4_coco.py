# EfficientDet-D4 on COCO-format data: 1024 px input, the compound table's backbone,
# BiFPN and heads (effnet_backbones.EFFICIENTDET_CONFIGS['d4']); batch 6 on one large GPU.
#
#   python tools/train.py configs/efficientdet/efficientdet_d4_coco.py --data-root DIR
_base_ = ['./efficientdet_d0_coco.py']

variant = 'd4'
img_size = 1024
batch_size = 6
model = dict(variant=variant)
train_dataloader = dict(batch_size=batch_size, dataset=dict(img_size=img_size))
val_dataloader = dict(dataset=dict(img_size=img_size))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=0.02 * batch_size / 16))
