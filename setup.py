"""Packaging for effnet-backbones: the library (effnet_backbones) and the task code (tasks)."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_version() -> str:
    for line in (ROOT / 'effnet_backbones' / '__init__.py').read_text().splitlines():
        if line.startswith('__version__'):
            return line.split('=')[1].strip().strip("'\"")
    raise RuntimeError('effnet_backbones/__init__.py has no __version__')


EXPORT_REQUIRES = ['onnx>=1.16', 'onnxscript>=0.3', 'onnxruntime>=1.18']

setup(
    name='effnet-backbones',
    version=read_version(),
    description='EfficientNet B0-B7 as exact, fast, multi-scale backbones for segmentation and '
                'detection (smp, torchvision, MMEngine)',
    long_description=(ROOT / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['effnet_backbones', 'effnet_backbones.*', 'tasks', 'tasks.*']),
    include_package_data=True,
    package_data={'tasks': ['**/*.png', '**/*.json', '**/*.md', '**/*.txt'],
                  'effnet_backbones': ['csrc/*.cpp']},  # the caching CPU allocator's source
    # torch and torchvision unpinned so pip resolves a matching pair (the CUDA build, which also
    # runs on CPU); pinning torch alone can select a CPU-only wheel torchvision's ops do not load on.
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'timm>=0.9.16',
        'segmentation-models-pytorch>=0.4',
        # mmengine-lite is mmengine without its opencv-python requirement: albumentations already
        # brings opencv-python-headless, and two distributions of one cv2 module in one
        # environment overwrite each other's files
        'mmengine-lite>=0.10.4',
        'albumentations>=1.4',
        'pycocotools>=2.0.7',
        'numpy',
        'pillow',
        'tifffile',
        # NIfTI volumes (nnU-Net / Decathlon layouts) are read and written with nibabel, NRRD and
        # MetaImage volumes with SimpleITK (nnU-Net's reader for them)
        'nibabel>=4',
        'SimpleITK>=2.2',
        # connected components (largest-component post-processing)
        'scipy',
        'matplotlib',
        'safetensors',
        'opencv-python-headless',
    ],
    extras_require={
        'export': EXPORT_REQUIRES,
        # the peers tools/benchmark_task.py compares against (smp and torchvision are already in)
        'bench': ['monai>=1.3'],
        # pytest-randomly runs the tests in a new random order each time: none may depend on another
        # effdet: the EfficientDet reference the BiFPN / EfficientDet parity tests build
        'dev': ['pytest>=7.3', 'pytest-xdist', 'pytest-timeout', 'pytest-randomly',
                'effdet>=0.4.1'] + EXPORT_REQUIRES,
    },
)
