"""Import a command-line tool as a module (tools/ is no package, and 'test' would clash with the
stdlib's module of that name), and the checkout's folders the tool tests name."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / 'tools'
CONFIGS = ROOT / 'configs'


def tool(name):
    """tools/<name>.py as a module, so tests can call its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location(f'tools_{name}', TOOLS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
