"""tasks.segmentation.augment: image and mask move together; crops pad the mask with ignore."""
import random

import numpy as np

from tasks.segmentation.augment import apply_pipeline, build_pipeline, crop_around_foreground


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


def test_foreground_crop_draws_classes_not_pixels():
    # one large class (2,500 px) and one tiny class (4 px): drawn per pixel the tiny one would
    # be in about 1 of 600 windows, drawn per class in about half
    mask = np.zeros((200, 200), np.uint8)
    mask[:50, :50] = 1
    mask[190:192, 190:192] = 2
    mask[100, :] = 255  # ignored pixels are never a target
    image = np.arange(200 * 200, dtype=np.float32).reshape(200, 200)
    random.seed(0)
    holds_tiny = []
    for _ in range(200):
        window, window_mask = crop_around_foreground(image, mask, (32, 40))
        assert window.shape == (32, 40) and window_mask.shape == (32, 40)
        assert (window_mask % 255 > 0).any()
        top, left = divmod(int(window[0, 0]), 200)  # the window is the image's, not a copy
        assert np.array_equal(window_mask, mask[top:top + 32, left:left + 40])
        holds_tiny.append(bool((window_mask == 2).any()))
    assert 70 < sum(holds_tiny) < 130


def test_foreground_crop_leaves_small_sides_and_empty_masks_whole():
    image = np.zeros((20, 90), np.float32)
    empty = np.zeros((20, 90), np.uint8)
    assert crop_around_foreground(image, empty, (32, 32))[1] is empty
    mask = empty.copy()
    mask[5, 80] = 1
    window, window_mask = crop_around_foreground(image, mask, (32, 32))
    assert window.shape == (20, 32) and window_mask[5].any()
