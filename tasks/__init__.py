"""Task code built on the library: segmentation (smp decoders) and detection, on MMEngine."""
