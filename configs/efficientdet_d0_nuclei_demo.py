# EfficientDet-D0 (from scratch) on the embedded nuclei set: the RetinaNet demo's data, crops,
# schedule and budget (configs/_base_/nuclei_demo_detection.py: 600 iterations of batch 2 on a
# CPU), so the two detectors compare directly (docs/detection.md):
#
#   python tools/train.py configs/efficientdet_d0_nuclei_demo.py
#
# Nuclei are ~23 px: anchor_scale 2 makes the P3 anchors 16 px (the paper's 4 gives 32 px), as
# the RetinaNet demo's anchor_sizes start at 16.
_base_ = [
    './_base_/models/efficientdet.py',
    './_base_/nuclei_demo_detection.py',
]

model = dict(
    variant='d0',  # the backbone keeps effdet's stochastic depth (drop_path_rate 0.2)
    bifpn=dict(anchor_scale=2.0),
)
