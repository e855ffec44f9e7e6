"""The task packages are siblings: neither imports the other, and each registers its own classes
(through its registry module) in the library's scope when imported."""
import subprocess
import sys

import pytest

from tool_loader import ROOT

REGISTERED = {
    'tasks.segmentation': ('SegmentationModel', 'SegFolderDataset', 'SegMetric', 'DiceLoss'),
    'tasks.detection': ('RetinaNet', 'CocoDetDataset', 'CocoMetric', 'DetDataPreprocessor'),
    'tasks.engine': ('NanLossGuardHook', 'SafeCheckpointHook', 'TransplantInitHook'),
}
SIBLINGS = {'tasks.segmentation': 'tasks.detection', 'tasks.detection': 'tasks.segmentation'}


@pytest.mark.parametrize('package', list(REGISTERED))
def test_importing_a_task_registers_its_classes_and_not_its_sibling(package):
    sibling = SIBLINGS.get(package, 'tasks.segmentation')
    names = ', '.join(repr(name) for name in REGISTERED[package])
    code = (f'import sys, {package}\n'
            f'from effnet_backbones.registry import DATASETS, HOOKS, METRICS, MODELS\n'
            f'known = set().union(*(r.module_dict for r in (MODELS, DATASETS, METRICS, HOOKS)))\n'
            f'missing = {{{names}}} - known\n'
            f'assert not missing, missing\n'
            f'assert {sibling!r} not in sys.modules, "{package} imported {sibling}"\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize('package,sibling', [('segmentation', 'detection'),
                                             ('detection', 'segmentation')])
def test_task_sources_never_name_their_sibling(package, sibling):
    for path in (ROOT / 'tasks' / package).rglob('*.py'):
        for line in path.read_text().splitlines():
            if line.lstrip().startswith(('import ', 'from ')):
                assert sibling not in line, f'{path}: {line}'
