import pytest
import torch

from calibration import assert_each_tensor_matters, calibrate_bn
from effnet_backbones import EfficientNet
from effnet_backbones.export import export_model, run_exported

# a second batch size and odd sides prove the exported graph is not fixed to the example
_GEN = torch.Generator().manual_seed(0)
INPUTS = [torch.randn(1, 3, 64, 64, generator=_GEN), torch.randn(2, 3, 97, 131, generator=_GEN)]
# float32 across runtimes: the deepest tap differs by ~1.2e-5 relative (a zeroed tap: 1.0)
RTOL = 1e-4


# ONNX (the slowest export) runs once, on the harder dynamic 'same' padding
@pytest.mark.parametrize('fmt,padding', [('onnx', 'same'), ('torchscript', 'same'),
                                         ('torchscript', 'symmetric'),
                                         ('exported-program', 'symmetric')])
def test_backbone_export_matches_pytorch_at_other_sizes(tmp_path, fmt, padding):
    # calibrated BN statistics keep every tap of order one, so a broken deep layer shows
    model = calibrate_bn(EfficientNet('b0', padding=padding, scse=True), INPUTS[1])
    path = export_model(model, tmp_path / f'b0.{fmt}', fmt, torch.randn(1, 3, 64, 64))
    assert path.exists() and not list(tmp_path.glob('.*tmp*'))
    for x in INPUTS:
        with torch.no_grad():
            expected = model(x)
        assert_each_tensor_matters(run_exported(path, fmt, x), expected, rtol=RTOL)
    shapes = [tuple(t.shape) for t in run_exported(path, fmt, INPUTS[1])]
    assert shapes == [(2, 24, 25, 33), (2, 40, 13, 17), (2, 112, 7, 9), (2, 320, 4, 5)]
    if fmt == 'onnx':
        import onnx
        opsets = {entry.domain: entry.version for entry in onnx.load(str(path)).opset_import}
        assert opsets[''] >= 17


def test_onnx_opset_older_than_17_is_refused(tmp_path):
    model = EfficientNet('b0', out_indices=(4,)).eval()
    with pytest.raises(ValueError, match='opset must be 17 or newer, got 13'):
        export_model(model, tmp_path / 'old.onnx', 'onnx', torch.randn(1, 3, 64, 64), opset=13)


def test_unknown_format_and_failed_export_leave_the_previous_file(tmp_path):
    model = EfficientNet('b0').eval()
    with pytest.raises(ValueError, match="one of \\('onnx', 'torchscript', 'exported-program'\\), got 'tflite'"):
        export_model(model, tmp_path / 'x', 'tflite', torch.randn(1, 3, 64, 64))
    target = tmp_path / 'b0.ts'
    target.write_bytes(b'previous good export')
    with pytest.raises(ValueError, match="1 channels but the backbone was built with in_chans=3"):
        export_model(model, target, 'torchscript', torch.randn(1, 1, 64, 64))
    assert target.read_bytes() == b'previous good export'
    assert [p.name for p in tmp_path.iterdir()] == ['b0.ts']
