# Medical volumes in the nnU-Net v2 raw layout (DATA_ROOT/imagesTr/<case>_0000.nii.gz, one file
# per channel, DATA_ROOT/labelsTr/<case>.nii.gz, DATA_ROOT/dataset.json; the Decathlon's
# imagesTr/<case>.nii.gz too), trained as 2-D slices along each case's coarsest-spaced axis.
# Validation and test are per case, in 3-D (VolumeSegMetric). Pass your folder with --data-root.
task = 'segmentation'
custom_imports = dict(imports=['tasks.engine', 'tasks.segmentation'], allow_failed_imports=False)

data_root = 'data/nnUNet_raw/Dataset001'  # replace with --data-root DIR
# train / val: fold `fold` of DATA_ROOT/splits_final.json (nnU-Net's), else of a seeded 5-fold split
fold = 0
# 'auto': channels named CT in dataset.json get nnU-Net's CT normalisation (clip to the training
# foreground's 0.5..99.5 percentiles, then its mean / std, measured when training starts), all
# others a per-volume z-score; or one dict for all, e.g. dict(mode='zscore', nonzero=True), or a
# list with one per channel
normalize = dict(mode='auto')
crop_size = 256
# every case's slices resampled in-plane to one spacing (nnU-Net's 2-D configuration): 'median'
# of the training cases (measured when training starts, kept in the checkpoint), a (row, column)
# spacing, or None to use every case as stored; predictions are scored and written on each
# case's own grid
target_spacing = 'median'

train_pipeline = [
    dict(type='HorizontalFlip', p=0.5),
    dict(type='VerticalFlip', p=0.5),
    dict(type='RandomRotate90', p=0.5),
    dict(type='Affine', scale=(0.8, 1.25), rotate=(-30, 30), p=0.5, fill=0, fill_mask=255),
    dict(type='RandomBrightnessContrast', brightness_limit=0.1, contrast_limit=0.2, p=0.5),
    dict(type='RandomGamma', gamma_limit=(70, 150), p=0.3),
]
dataset = dict(type='effnet_backbones.VolumeSliceDataset', data_root=data_root, fold=fold,
               classes=None, in_channels=None, normalize=normalize, slice_axis='coarsest',
               target_spacing=target_spacing)

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    # a third of the slices are drawn with foreground and cropped around it (nnU-Net's share)
    dataset=dict(**dataset, split='train', crop_size=crop_size, foreground_ratio=0.33,
                 pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=4,  # slices of one case have one size; a batch never mixes sizes badly (padding)
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(**dataset, split='val'),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='effnet_backbones.VolumeSegMetric', ignore_index=255)
test_evaluator = val_evaluator
