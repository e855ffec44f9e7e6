"""tools/export.py: a U-Net from a config + checkpoint exported with dynamic sizes, checked against
PyTorch (<= 1e-4 in float32), and the backbone part alone."""

import pytest
import torch

from tool_loader import ROOT, tool
from effnet_backbones.export import run_exported
from effnet_backbones.registry import MODELS
from tasks.engine.config import load_config

QUICK = str(ROOT / 'configs' / 'unet_effb0_quick.py')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    model = MODELS.build(load_config(QUICK).model)
    path = tmp_path_factory.mktemp('ckpt') / 'iter_1.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path), model.eval()


def test_unet_onnx_export_takes_any_size_and_matches_pytorch(tmp_path, checkpoint):
    path, model = checkpoint
    out = tmp_path / 'unet.onnx'
    difference = tool('export').main([QUICK, path, '--format', 'onnx', '--out', str(out)])
    assert difference <= 1e-4
    x = torch.randn(1, 1, 100, 75)  # not multiples of 32: padded and cropped inside the graph
    (logits,) = run_exported(out, 'onnx', x)
    with torch.no_grad():
        torch.testing.assert_close(logits, model.logits(x), rtol=1e-4, atol=1e-4)
    assert logits.shape == (1, 3, 100, 75)


def test_backbone_part_exports_the_taps(tmp_path, checkpoint):
    path, model = checkpoint
    out = tmp_path / 'backbone.pt2'
    difference = tool('export').main([QUICK, path, '--format', 'exported-program', '--part',
                                      'backbone', '--out', str(out)])
    assert difference <= 1e-4
    taps = run_exported(out, 'exported-program', torch.randn(2, 1, 64, 64))
    assert [t.shape[1] for t in taps] == [16, 24, 40, 112, 320]


def test_bad_part_and_format_are_refused(tmp_path, checkpoint):
    path, _ = checkpoint
    with pytest.raises(SystemExit):
        tool('export').main([QUICK, path, '--format', 'tflite', '--out', str(tmp_path / 'x')])
    with pytest.raises(SystemExit):
        tool('export').main([QUICK, path, '--format', 'onnx', '--part', 'head',
                             '--out', str(tmp_path / 'x')])
