"""Adapters that plug the backbone into other libraries (segmentation-models-pytorch, ...)."""
