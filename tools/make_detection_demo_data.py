"""Rebuild the embedded detection demo (tasks/detection/demo_data) from the stardist wheel.

    python tools/make_detection_demo_data.py             # pip-downloads stardist==0.9.2 (no deps)
    python tools/make_detection_demo_data.py --wheel stardist-0.9.2-*.whl --out DIR

One box per nucleus of the segmentation demo's image and tiles (see tasks/detection/demo.py). The
result is committed, so training and tests never need this; it documents where the data comes from.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # from a checkout, installed or not

from make_demo_data import run  # noqa: E402  (the sibling tool: same wheel, same command line)

from tasks.detection.demo import DEMO_DATA_ROOT, build_detection_demo  # noqa: E402


def main(argv=None) -> None:
    run(build_detection_demo, DEMO_DATA_ROOT, 'boxes per split', __doc__.splitlines()[0], argv)


if __name__ == '__main__':
    main()
