# COCO-format detection data: DATA_ROOT/train.json, DATA_ROOT/val.json, DATA_ROOT/images/.
# Images are letterboxed to img_size (aspect ratio kept, padded bottom/right); training adds
# scale jitter (rescale, then crop or pad back to img_size), a horizontal flip and colour jitter,
# all moving the boxes. Metrics: COCO box mAP (pycocotools), in the original image pixels.
task = 'detection'
custom_imports = dict(imports=['tasks.engine', 'tasks.detection'], allow_failed_imports=False)

data_root = 'data/coco'
classes = None  # every category of train.json, by id; or a tuple of names (label order)
in_channels = None  # from the images (gray 1, colour 3); set it to convert gray <-> RGB
normalize = dict(mode='fixed', mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # ImageNet
img_size = 896

train_pipeline = [
    dict(type='HorizontalFlip', p=0.5),
    dict(type='ColorJitter', brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
]
dataset = dict(type='effnet_backbones.CocoDetDataset', data_root=data_root, img_dir='images',
               classes=classes, in_channels=in_channels, normalize=normalize, img_size=img_size,
               resize='letterbox')

train_dataloader = dict(
    batch_size=8,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(**dataset, ann_file='train.json', scale_jitter=(0.8, 1.2),
                 pipeline=train_pipeline, verify='files'),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(**dataset, ann_file='val.json', verify='files'),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='effnet_backbones.CocoMetric', classwise=False)
test_evaluator = val_evaluator
