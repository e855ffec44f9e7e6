"""tasks.common.visualize: class colours shared by the tasks, overlays leave background alone."""
import numpy as np

from tasks.common.visualize import PALETTE, class_colours, overlay


def test_class_colours_skip_the_background_colour_beyond_the_palette():
    classes = np.array([0, 1, len(PALETTE) - 1, len(PALETTE)])
    colours = class_colours(classes)
    assert colours[0].tolist() == [0, 0, 0]
    assert colours[1].tolist() == colours[3].tolist() == PALETTE[1].tolist()


def test_overlay_colours_foreground_only():
    rgb = np.full((2, 2, 3), 100, np.uint8)
    labels = np.array([[0, 1], [2, 0]])
    out = overlay(rgb, labels, alpha=1.0)
    assert out[0, 0].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == PALETTE[1].tolist() and out[1, 0].tolist() == PALETTE[2].tolist()
