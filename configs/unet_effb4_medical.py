# U-Net + EfficientNet-B4 with scSE on every encoder tap, Dice + CE, AdamW with warm-up and cosine
# decay: medical image segmentation, sized for one GPU (batch 8 of 256 x 256 crops, 4000 iters).
# Trained from scratch it uses what docs/ablations.md measured to train fastest: EfficientNet-Lite's
# blocks (no squeeze-and-excitation, ReLU6), ResNet-D shortcuts on the blocks without a skip
# (every block residual) and BN statistics that match the weights at each validation and
# checkpoint (the average of the last 25 training iterations' batch statistics: PreciseBN's final
# Dice without its forward passes, docs/quality.md sections 1l-1m).
# ImageNet weights have no such shortcuts and were trained with SE and Swish: with
# encoder_options.pretrained set, also set shortcut=None, block_attention='se' and
# act_layer='swish' (loading names the missing tensors).
# The recipe itself is configs/_base_/medical_unet_b4.py; this config adds image folders.
#
#   python tools/train.py configs/unet_effb4_medical.py                  # demo nuclei data
#   python tools/train.py configs/unet_effb4_medical.py --data-root DIR  # your data
#
# Without CUDA the cpu_profile applies (printed at start), so the same command finishes on a CPU
# in minutes. A DIR holding NIfTI volumes (imagesTr/) switches to configs/unet_effb4_volumes.py's
# datasets by itself.
_base_ = [
    './_base_/medical_unet_b4.py',
    './_base_/datasets/medical_folder.py',
]
