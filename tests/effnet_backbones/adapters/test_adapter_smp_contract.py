"""Our encoders keep the contract smp's own encoder and model test suites hold every encoder to
(segmentation-models-pytorch's tests/encoders/base.py and tests/models/base.py): feature count
and strides for every depth, in_channels 1/3/4, dilation, invalid depths, and scripting,
export and compilation that reproduce eager outputs. Written here from that contract."""
import pytest
import segmentation_models_pytorch as smp
import torch

import effnet_backbones  # noqa: F401  (registers the encoders)
from calibration import assert_close_relative, calibrate_bn

STRIDES = [1, 2, 4, 8, 16, 32]
NAMES = ['effnet-b0', 'effnet-b0-scse']


def sample(channels: int = 3) -> torch.Tensor:
    """The same input every call (a fresh tensor: one made under inference_mode and cached
    could not be used with autograd by a later test)."""
    return torch.rand(1, channels, 64, 64, generator=torch.Generator().manual_seed(channels))


def feature_strides(features):
    return [64 // f.shape[2] for f in features], [64 // f.shape[3] for f in features]


def encoder(name: str, **options):
    return smp.encoders.get_encoder(name, encoder_weights=None, **options)


@pytest.mark.parametrize('name', NAMES)
def test_forward_backward_gives_six_maps(name):
    features = encoder(name, in_channels=3)(sample())
    assert len(features) == 6 and features[0] is not None
    features[-1].mean().backward()


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('channels', [1, 3, 4])
def test_in_channels(name, channels):
    model = encoder(name, in_channels=channels).eval()
    with torch.inference_mode():
        features = model(sample(channels))
    assert features[1].shape[1] == model.out_channels[1] and model.out_channels[0] == channels


@pytest.mark.parametrize('name', ['effnet-b0', 'effnet-b4-scse'])
@pytest.mark.parametrize('depth', [3, 4, 5])
def test_depth(name, depth):
    model = encoder(name, in_channels=3, depth=depth).eval()
    with torch.inference_mode():
        features = model(sample())
    assert len(features) == depth + 1 and len(model.out_channels) == depth + 1
    assert feature_strides(features) == (STRIDES[:depth + 1], STRIDES[:depth + 1])
    assert model.output_stride == STRIDES[depth]
    assert [f.shape[1] for f in features] == model.out_channels


@pytest.mark.parametrize('depth', [0, 6])
def test_invalid_depth(depth):
    with pytest.raises(ValueError, match=f'depth must be 1..5, got {depth}'):
        smp.encoders.get_encoder('effnet-b0', depth=depth)


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('stride', [8, 16])
def test_dilated(name, stride):
    model = encoder(name, in_channels=3, output_stride=stride).eval()
    with torch.inference_mode():
        features = model(sample())
    expected = [min(stride, s) for s in STRIDES]
    assert feature_strides(features) == (expected, expected)


@pytest.fixture(scope='module')
def calibrated():
    """An eval-mode encoder whose deep maps are of order one (BN statistics from a batch)."""
    model = encoder('effnet-b0-scse', in_channels=3)
    return calibrate_bn(model, torch.rand(2, 3, 64, 64))


def test_torch_script_reproduces_eager(calibrated):
    assert calibrated._is_torch_scriptable
    scripted = torch.jit.script(calibrated)
    with torch.inference_mode():
        assert_close_relative(scripted(sample()), calibrated(sample()), rtol=1e-6)


def test_torch_export_reproduces_eager(calibrated):
    assert calibrated._is_torch_exportable
    exported = torch.export.export(calibrated, args=(sample(),), strict=True)
    with torch.inference_mode():
        assert_close_relative(exported.module()(sample()), calibrated(sample()), rtol=1e-6)


def test_compile_full_graph_dynamic(calibrated):
    assert calibrated._is_torch_compilable
    torch.compiler.reset()
    compiled = torch.compile(calibrated, fullgraph=True, dynamic=True, backend='eager')
    with torch.inference_mode():
        assert_close_relative(compiled(sample()), calibrated(sample()), rtol=1e-6)


@pytest.mark.parametrize('decoder', ['Unet', 'FPN', 'DeepLabV3Plus'])
def test_smp_models_on_our_encoder_script(decoder):
    model = smp.create_model(decoder, 'effnet-b0', encoder_weights=None, in_channels=1, classes=2)
    assert model._is_torch_scriptable
    model = calibrate_bn(model, torch.rand(2, 1, 64, 64))
    scripted = torch.jit.script(model)
    with torch.inference_mode():
        assert_close_relative(scripted(sample(1)), model(sample(1)), rtol=1e-5)
