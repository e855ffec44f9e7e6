# RetinaNet (torchvision) on EfficientNet + FPN P3-P7: GroupNorm head and GIoU box loss
# (torchvision's v2 recipe), P6 from C5 (the paper). Variant and sizes are set by the configs that
# use it; classes and input channels come from the data.
model = dict(
    type='effnet_backbones.RetinaNet',
    backbone=dict(
        type='effnet_backbones.EfficientNet',
        arch='b0',
        out_indices=(2, 3, 4),  # strides 8, 16, 32 -> P3, P4, P5
        in_chans=None,  # None: the datasets' in_channels (from the images)
        scse=False,
        drop_path_rate=0.1,
        frozen_stages=-1,
        norm_eval=False,
    ),
    num_classes=None,  # None: the number of classes of the datasets (train.json's categories)
    fpn=dict(out_channels=256, p6_from='c5'),
    anchor_sizes=(32, 64, 128, 256, 512),  # one base size per level P3..P7, network pixels
    anchor_scales=(1.0, 1.2599, 1.5874),  # 2 ** (0, 1/3, 2/3): three scales per octave
    aspect_ratios=(0.5, 1.0, 2.0),
    head_norm='gn',
    bbox_loss='giou',
    score_thresh=0.05,
    nms_thresh=0.5,
    detections_per_img=100,
    data_preprocessor=dict(type='effnet_backbones.DetDataPreprocessor'),
)
