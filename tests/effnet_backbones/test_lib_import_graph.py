"""The import graph follows the layers: the library imports no task, plotting or benchmark code,
and the task packages are siblings that never import each other."""
import ast
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_LIBRARY = ('tasks', 'matplotlib', 'benchmarks', 'mmengine.runner')


def imported_modules(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, lazy ones inside functions too."""
    package = '.'.join(path.relative_to(ROOT).with_suffix('').parts[:-1])
    if path.name == '__init__.py':
        package = '.'.join(path.relative_to(ROOT).parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield node.lineno, module


def offending(folder: str, forbidden: Tuple[str, ...]):
    return [f'{path.relative_to(ROOT)}:{line} imports {module}'
            for path in sorted((ROOT / folder).rglob('*.py'))
            for line, module in imported_modules(path)
            if any(module == name or module.startswith(name + '.') for name in forbidden)]


def test_relative_imports_resolve_to_absolute_names():
    lines = dict(imported_modules(ROOT / 'effnet_backbones/transplanting/core.py'))
    assert 'effnet_backbones.backbone' in lines.values()
    assert 'effnet_backbones.transplanting.pairing' in lines.values()


def test_the_library_imports_no_task_plotting_or_benchmark_code():
    assert offending('effnet_backbones', FORBIDDEN_IN_LIBRARY) == []


@pytest.mark.parametrize('task,sibling', [('segmentation', 'detection'),
                                          ('detection', 'segmentation')])
def test_tasks_are_siblings(task, sibling):
    assert offending(f'tasks/{task}', (f'tasks.{sibling}',)) == []


def test_importing_the_library_loads_none_of_them():
    code = ('import sys, effnet_backbones; '
            f'print([m for m in sys.modules if m.split(".")[0] in {FORBIDDEN_IN_LIBRARY[:3]!r} '
            'or m.startswith("mmengine.runner")])')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == '[]'
