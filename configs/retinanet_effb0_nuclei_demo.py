# RetinaNet + EfficientNet-B0 (from scratch) on the embedded nuclei set (tasks/detection/demo_data:
# 4 train tiles, 95 nuclei; 2 val tiles, 33 nuclei). Trains on a CPU in minutes (600 iterations
# of batch 2) to a val mAP@50 of about 0.7 (docs/detection.md):
#
#   python tools/train.py configs/retinanet_effb0_nuclei_demo.py
#   python tools/test.py configs/retinanet_effb0_nuclei_demo.py \
#       work_dirs/retinanet_effb0_nuclei_demo/best_coco_bbox_mAP_50_iter_600.pth
#
# Images keep their size (no img_size): nuclei are ~23 px, so anchors start at 16 px on P3.
# Training uses random 128 px crops with scale jitter, flips and rotations (the demo recipe,
# configs/_base_/nuclei_demo_detection.py); a light FPN (64 channels) keeps it fast.
_base_ = [
    './_base_/models/retinanet_effnet_fpn.py',
    './_base_/nuclei_demo_detection.py',
]

model = dict(
    backbone=dict(drop_path_rate=0.0),
    fpn=dict(out_channels=64),
    anchor_sizes=(16, 32, 64, 128, 256),
)
