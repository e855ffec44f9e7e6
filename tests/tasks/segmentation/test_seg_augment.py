"""tasks.segmentation.augment: image and mask move together; crops pad the mask with ignore."""
import numpy as np

from tasks.segmentation.augment import apply_pipeline, build_pipeline


def test_pipeline_moves_image_and_mask_together():
    image = np.arange(12, dtype=np.float32).reshape(3, 4, 1) / 12
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    pipeline = build_pipeline([dict(type='HorizontalFlip', p=1.0),
                               dict(type='OneOf', p=1.0, transforms=[dict(type='VerticalFlip', p=1.0)])])
    out_image, out_mask = apply_pipeline(pipeline, image, mask)
    assert np.array_equal(out_mask, mask[::-1, ::-1])
    assert np.allclose(out_image[..., 0] * 12, out_mask)


def test_crop_pads_mask_with_ignore():
    pipeline = build_pipeline(crop_size=(8, 8), ignore_index=255)
    image, mask = apply_pipeline(pipeline, np.ones((4, 6, 1), np.float32), np.ones((4, 6), np.uint8))
    assert image.shape == (8, 8, 1) and mask.shape == (8, 8)
    assert (mask == 255).sum() == 64 - 24 and (mask == 1).sum() == 24
