"""A checkpoint of another model stops tools/test.py (MMEngine alone loads it partly, warning)."""
import pytest
import torch

from effnet_backbones.registry import MODELS
from tasks.engine.checkpoint import CheckpointMismatchError
from tasks.engine.config import load_config
from tasks.engine.data import resolve_from_data
from tool_loader import CONFIGS, tool

QUICK = CONFIGS / 'unet_effb0_quick.py'


def test_test_tool_refuses_a_checkpoint_of_another_arch(tmp_path):
    cfg = load_config(str(QUICK))
    resolve_from_data(cfg)
    cfg.model.arch = 'b1'  # a checkpoint of a B1 U-Net, tested with the B0 config
    path = tmp_path / 'b1.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {}}, path)
    with pytest.raises(CheckpointMismatchError, match=r'b1\.pth does not fit .*SegmentationModel'):
        tool('test').main([str(QUICK), str(path), '--work-dir', str(tmp_path / 'work'),
                           '--cfg-options', 'test_dataloader.num_workers=0',
                           'test_dataloader.persistent_workers=False'])
