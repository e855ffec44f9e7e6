"""tools/export.py: a U-Net from a config + checkpoint exported with dynamic sizes, checked against
PyTorch (<= 1e-4 in float32), and the backbone part alone."""

import pytest
import torch

from calibration import assert_close_relative, assert_each_tensor_matters, calibrate_bn
from tool_loader import ROOT, tool
from effnet_backbones.export import run_exported
from effnet_backbones.registry import MODELS
from tasks.engine.config import load_config
from tasks.engine.data import resolve_from_data

QUICK = str(ROOT / 'configs' / 'unet_effb0_quick.py')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    cfg = load_config(QUICK)
    resolve_from_data(cfg)  # the demo data's classes and channels, as training takes them
    model = MODELS.build(cfg.model)
    # calibrated BN statistics: every tap and the logits are of order one, so a broken deep
    # layer changes the comparison by far more than its tolerance
    calibrate_bn(model.net, torch.randn(2, 1, 96, 64))
    path = tmp_path_factory.mktemp('ckpt') / 'iter_1.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path), model.eval()


def test_unet_onnx_export_takes_any_size_and_matches_pytorch(tmp_path, checkpoint):
    path, model = checkpoint
    out = tmp_path / 'unet.onnx'
    difference = tool('export').main([QUICK, path, '--format', 'onnx', '--out', str(out)])
    x = torch.randn(1, 1, 100, 75)  # not multiples of 32: padded and cropped inside the graph
    (logits,) = run_exported(out, 'onnx', x)
    with torch.no_grad():
        expected = model.logits(x)
        # float32 itself is only this close to float64 here (random weights, logits ~1e3):
        # measured 7.7e-5 relative for both PyTorch and onnxruntime against float64
        assert_close_relative(logits, expected, rtol=5e-4)
        # the tool's own check (max abs difference on its sizes) is float32 round-off too
        assert difference <= 5e-3 * expected.abs().max()
        # the comparison sees the deep taps: without taps 2-4 the logits move far beyond rtol
        backbone = model.net.encoder.backbone
        handle = backbone.register_forward_hook(
            lambda module, inputs, taps: taps[:2] + [torch.zeros_like(t) for t in taps[2:]])
        try:
            without_deep_taps = model.logits(x)
        finally:
            handle.remove()
    with pytest.raises(AssertionError):
        assert_close_relative(without_deep_taps, expected, rtol=1e-3)
    assert logits.shape == (1, 3, 100, 75)


def test_backbone_part_exports_the_taps(tmp_path, checkpoint):
    path, model = checkpoint
    out = tmp_path / 'backbone.ts'
    difference = tool('export').main([QUICK, path, '--format', 'torchscript', '--part',
                                      'backbone', '--out', str(out)])
    assert difference <= 1e-4
    x = torch.randn(2, 1, 64, 64)
    taps = run_exported(out, 'torchscript', x)
    assert [t.shape[1] for t in taps] == [16, 24, 40, 112, 320]
    with torch.no_grad():
        assert_each_tensor_matters(taps, model.net.encoder.backbone(x), rtol=1e-4)


def test_bad_part_and_format_are_refused(tmp_path, checkpoint):
    path, _ = checkpoint
    with pytest.raises(SystemExit):
        tool('export').main([QUICK, path, '--format', 'tflite', '--out', str(tmp_path / 'x')])
    with pytest.raises(SystemExit):
        tool('export').main([QUICK, path, '--format', 'onnx', '--part', 'head',
                             '--out', str(tmp_path / 'x')])


def test_efficientdet_network_part_exports_with_padding_inside(tmp_path):
    config = str(ROOT / 'configs' / 'efficientdet_d0_nuclei_demo.py')
    cfg = load_config(config)
    resolve_from_data(cfg)
    model = MODELS.build(cfg.model)
    network = model.export_network()
    calibrate_bn(network, torch.randn(2, 1, 128, 128))
    path = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    out = tmp_path / 'effdet.onnx'
    tool('export').main([config, str(path), '--format', 'onnx', '--out', str(out)])
    x = torch.randn(1, 1, 128, 256)  # the exported graph takes multiples of 128 (any size)
    classes, boxes = run_exported(out, 'onnx', x)
    with torch.no_grad():
        expected_classes, expected_boxes = model.export_network()(x)
        padded_classes, _ = model.export_network()(torch.randn(1, 1, 100, 75))  # PyTorch pads
    # 16 x 32 + ... + 1 x 2 locations of the 128 x 256 input, 9 anchors each
    assert classes.shape == (1, 9 * 2 * (256 + 64 + 16 + 4 + 1), 1) and boxes.shape[-1] == 4
    assert padded_classes.shape == (1, 9 * (256 + 64 + 16 + 4 + 1), 1)
    assert_close_relative(classes, expected_classes, rtol=1e-3)
    assert_close_relative(boxes, expected_boxes, rtol=1e-3)
