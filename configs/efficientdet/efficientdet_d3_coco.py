# EfficientDet-D3 on COCO-format data: 896 px input, the compound table's backbone,
# BiFPN and heads (effnet_backbones.EFFICIENTDET_CONFIGS['d3']); batch 8 on one large GPU.
#
#   python tools/train.py configs/efficientdet/efficientdet_d3_coco.py --data-root DIR
_base_ = ['./efficientdet_d0_coco.py']

variant = 'd3'
img_size = 896
batch_size = 8
model = dict(variant=variant)
train_dataloader = dict(batch_size=batch_size, dataset=dict(img_size=img_size))
val_dataloader = dict(dataset=dict(img_size=img_size))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=0.02 * batch_size / 16))
