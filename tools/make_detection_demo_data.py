"""Rebuild the embedded detection demo (tasks/detection/demo_data) from the stardist wheel.

    python tools/make_detection_demo_data.py             # pip-downloads stardist==0.9.2 (no deps)
    python tools/make_detection_demo_data.py --wheel stardist-0.9.2-*.whl --out DIR

One box per nucleus of the segmentation demo's image and tiles (see tasks/detection/demo.py). The
result is committed, so training and tests never need this; it documents where the data comes from.
"""
import _bootstrap  # noqa: F401,I001  (first: sets sys.path and OpenMP up before torch loads)

from make_demo_data import run  # the sibling tool: same wheel, same command line

from tasks.detection.demo import DEMO_DATA_ROOT, build_detection_demo


def main(argv=None) -> None:
    run(build_detection_demo, DEMO_DATA_ROOT, 'boxes per split', __doc__.splitlines()[0], argv)


if __name__ == '__main__':
    main()
