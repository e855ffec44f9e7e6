# EfficientDet-D5 on COCO-format data: 1280 px input, the compound table's backbone,
# BiFPN and heads (effnet_backbones.EFFICIENTDET_CONFIGS['d5']); batch 4 on one large GPU.
#
#   python tools/train.py configs/efficientdet/efficientdet_d5_coco.py --data-root DIR
_base_ = ['./efficientdet_d0_coco.py']

variant = 'd5'
img_size = 1280
batch_size = 4
model = dict(variant=variant)
train_dataloader = dict(batch_size=batch_size, dataset=dict(img_size=img_size))
val_dataloader = dict(dataset=dict(img_size=img_size))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=0.02 * batch_size / 16))
