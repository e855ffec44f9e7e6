"""Task code built on the library, on MMEngine.

``tasks.segmentation`` (smp decoders) and ``tasks.detection`` (torchvision detectors) are
siblings that never import each other; what both need lives in ``tasks.common`` (image I/O,
intensity normalisation, augmentation steps, visualisation, demo data, the inferencer base) and
``tasks.engine`` (configs, the Runner, checkpoints, hooks).
"""
