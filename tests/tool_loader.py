"""Import a command-line tool as a module (tools/ is no package, and 'test' would clash with the
stdlib's module of that name), and the checkout's folders the tool tests name."""
import importlib.util
import socket
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


def cfg_options(base, name, **extra):
    """``--cfg-options`` arguments: ``base`` plus a unique experiment name (MMEngine keys state by
    it) and ``extra`` (dotted keys)."""
    merged = {**base, 'experiment_name': name, **extra}
    return ['--cfg-options'] + [f'{key}={value}'.replace(' ', '') for key, value in merged.items()]


def run_train_tool(config, data_root, work_dir, max_iters, *arguments):
    """``tools/train.py CONFIG --work-dir W --data-root D --max-iters N ARGUMENTS...``; returns
    the runner."""
    return tool('train').main([str(config), '--work-dir', str(work_dir), '--data-root',
                               str(data_root), '--max-iters', str(max_iters), *arguments])


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (for torchrun's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


#: Config lines of a tiny deterministic U-Net run (16-channel decoder, fixed 64 px crops without
#: augmentation, no loader processes) that engine tests append to their own ``_base_``.
TINY_UNET_LINES = """
_loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(batch_size=2, **_loader, dataset=dict(crop_size=64, pipeline=[]))
val_dataloader = dict(**_loader)
test_dataloader = dict(**_loader)
randomness = dict(seed=0, deterministic=True)
"""


def tiny_unet_model_line(drop_path_rate: float) -> str:
    """The ``model`` line of :data:`TINY_UNET_LINES` configs."""
    return (f'model = dict(encoder_options=dict(drop_path_rate={drop_path_rate}), '
            f'decoder_options=dict(decoder_channels=[16, 16, 16, 16, 16]))\n')
