# EfficientDet-D0 (from scratch) on the embedded nuclei set: the RetinaNet demo's data, crops,
# schedule and budget (configs/_base_/nuclei_demo_detection.py: 600 iterations of batch 2 on a
# CPU), so the two detectors compare directly (docs/detection.md):
#
#   python tools/train.py configs/efficientdet_d0_nuclei_demo.py
#
# Nuclei are ~23 px: anchor_scale 2 makes the P3 anchors 16 px (the paper's 4 gives 32 px), as
# the RetinaNet demo's anchor_sizes start at 16.
#
# Three changes from the shared recipe (docs/detection.md section 9): GroupNorm instead of
# BatchNorm in the BiFPN and the head nets (norm_layer='gn'): with batches of two crops the
# BiFPN's running BN statistics fitted the validation tiles so badly in half the runs that a D0
# which trained as well as the others validated at 0.05-0.22 mAP (0.50 with batch statistics,
# same weights); with GroupNorm three seeds end at 0.52-0.54. Prediction in overlapping 128 px
# windows (the training crop) merged across windows; and AdamW 4e-3 instead of 2e-3.
_base_ = [
    './_base_/models/efficientdet.py',
    './_base_/nuclei_demo_detection.py',
]

model = dict(
    variant='d0',  # the backbone keeps effdet's stochastic depth (drop_path_rate 0.2)
    bifpn=dict(anchor_scale=2.0),
    norm_layer='gn',  # the BiFPN's and heads'; the backbone keeps BatchNorm (and PreciseBN)
    test_cfg=dict(mode='slide', window=128),
)
optim_wrapper = dict(optimizer=dict(lr=4e-3))
