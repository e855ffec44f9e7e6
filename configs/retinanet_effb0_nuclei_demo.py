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
    # validation, test.py and infer.py predict windows of the training crop (filled in from the
    # pipeline's RandomCrop) and merge them: trained on 128 px crops, the network meets another
    # input on whole images (its receptive field and SE gates span the crop, not the image). On
    # mni-subcortical-boxes (364 px slices) whole-slice validation fell to 0.004 mAP by the end
    # of a 3000-iteration run, sliced the same training rose to 0.034-0.039; timelapse-cells-boxes
    # 0.285 sliced against 0.273 whole; the 2-tile demo 0.480 against 0.473 (docs/quality.md 2e).
    # --cfg-options model.test_cfg.mode=whole turns it off.
    test_cfg=dict(mode='slide'),
)
