"""The install brings one distribution of each module: opencv-python and opencv-python-headless
both install ``cv2`` and overwrite each other's files (mmengine requires the first, albumentations
the second), so the project depends on mmengine-lite, which is mmengine without opencv-python."""
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CV2_DISTRIBUTIONS = ('opencv-python', 'opencv-python-headless', 'opencv-contrib-python',
                     'opencv-contrib-python-headless')


def installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_setup_requires_mmengine_lite_not_mmengine():
    text = (ROOT / 'setup.py').read_text()
    assert "'mmengine-lite>=" in text and "'mmengine>=" not in text


def test_one_cv2_distribution_is_installed():
    present = [name for name in CV2_DISTRIBUTIONS if installed(name)]
    assert present == ['opencv-python-headless'], (
        f'{present} are installed; they all provide cv2. Install mmengine-lite instead of '
        f'mmengine (pip uninstall mmengine opencv-python; pip install --force-reinstall '
        f'opencv-python-headless mmengine-lite)')
