# Medical images in DATA_ROOT/{train,val}/{images,masks} (class index per pixel, 255 = ignore).
# Default data: the embedded nuclei demo (tasks/segmentation/demo_data); --data-root DIR
# switches to your own folder.
task = 'segmentation'
custom_imports = dict(imports=['tasks.engine', 'tasks.segmentation'], allow_failed_imports=False)

data_root = '{{ fileDirname }}/../../../tasks/segmentation/demo_data'
# None: from the data (DATA_ROOT/dataset.json or classes.txt, else the mask values; channels from
# the images). Set them to insist: a disagreement with the data stops the run, naming both.
classes = None
in_channels = None
# per-image min-max between percentiles suits microscopy; CT: dict(mode='window', center=40,
# width=400, intercept=-1024); 8-bit photos: dict(mode='fixed', mean=..., std=...)
normalize = dict(mode='minmax', percentiles=(0.5, 99.8))
crop_size = 256
# share of training crops placed around a pixel of a foreground class drawn uniformly among those
# in the image (nnU-Net's 0.33): structures of a few pixels reach the batches as often as large ones
foreground_ratio = 0.33

train_pipeline = [
    dict(type='HorizontalFlip', p=0.5),
    dict(type='VerticalFlip', p=0.5),
    dict(type='RandomRotate90', p=0.5),
    dict(type='Affine', scale=(0.8, 1.25), rotate=(-30, 30), shear=(-8, 8), p=0.5,
         fill=0, fill_mask=255),
    dict(type='RandomBrightnessContrast', brightness_limit=0.2, contrast_limit=0.2, p=0.5),
    dict(type='OneOf', p=0.25, transforms=[
        dict(type='ElasticTransform', alpha=30, sigma=6, fill_mask=255),
        dict(type='GridDistortion', distort_limit=0.2, fill_mask=255),
    ]),
]
dataset = dict(type='effnet_backbones.SegFolderDataset', data_root=data_root, classes=classes,
               in_channels=in_channels, normalize=normalize)

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(**dataset, split='train', crop_size=crop_size,
                 foreground_ratio=foreground_ratio, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,  # whole images of any size, no resizing
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(**dataset, split='val'),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='effnet_backbones.SegMetric', ignore_index=255)
test_evaluator = val_evaluator
