# EfficientDet (BiFPN + shared class / box nets, effdet's anchors and focal + Huber loss) on our
# EfficientNet. The variant ('d0' ... 'd7') sets backbone, BiFPN width and repeats, head repeats
# and fusion from the compound table; classes and input channels come from the data. Inputs of
# any size are padded to a multiple of 128 inside the model.
model = dict(
    type='effnet_backbones.EfficientDet',
    variant='d0',
    backbone=dict(
        in_chans=None,  # None: the datasets' in_channels (from the images)
        drop_path_rate=0.2,  # effdet's
        memory_efficient=False,
        with_cp=False,
    ),
    bifpn=dict(),  # change the variant: width, repeats, head_repeats, fusion, anchor_scale
    loss=dict(),  # change effdet's loss: focal_alpha, focal_gamma, huber_delta, box_loss_weight
    num_classes=None,  # None: the number of classes of the datasets (train.json's categories)
    score_thresh=0.05,
    nms_thresh=0.5,
    detections_per_img=100,
    data_preprocessor=dict(type='effnet_backbones.DetDataPreprocessor'),
)
