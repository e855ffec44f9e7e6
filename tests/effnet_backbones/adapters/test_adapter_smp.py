"""The smp encoder adapter: registration, every smp decoder, depth, dilation, channels, scSE."""
import pytest
import segmentation_models_pytorch as smp
import torch

import effnet_backbones  # noqa: F401  (registers the encoders)
from effnet_backbones import EffNetEncoder, create_smp_model
from effnet_backbones.adapters.smp import ENCODER_NAMES
from effnet_backbones.layers import SCSE

# (decoder, extra arguments, expected encoder output stride, input side); PAN needs 128 px because
# its pyramid attention pools the stride-16 map down three more times
DECODERS = [
    ('Unet', {}, 32, 64), ('UnetPlusPlus', {}, 32, 64), ('FPN', {}, 32, 64),
    ('DeepLabV3', {}, 8, 64), ('DeepLabV3Plus', {'encoder_output_stride': 16}, 16, 64),
    ('DeepLabV3Plus', {'encoder_output_stride': 8}, 8, 64), ('Linknet', {}, 32, 64),
    ('MAnet', {}, 32, 64), ('PSPNet', {}, 8, 64), ('PAN', {}, 16, 128), ('UPerNet', {}, 32, 64),
    ('Segformer', {}, 32, 64),
]


def test_every_name_is_registered_in_smp():
    expected = {f'effnet-b{i}' for i in range(8)} | {f'effnet-b{i}-scse' for i in range(8)}
    assert set(ENCODER_NAMES) == expected
    assert expected <= set(smp.encoders.get_encoder_names())


@pytest.mark.parametrize('decoder,kwargs,stride,side', DECODERS,
                         ids=[f'{d}{k.get("encoder_output_stride", "")}' for d, k, _, _ in DECODERS])
def test_smp_decoder_forward_backward(decoder, kwargs, stride, side):
    model = smp.create_model(decoder, encoder_name='effnet-b0', encoder_weights=None,
                             in_channels=1, classes=3, **kwargs)
    assert isinstance(model.encoder, EffNetEncoder)
    assert model.encoder.output_stride == stride
    out = model(torch.randn(2, 1, side, side))
    assert out.shape == (2, 3, side, side)
    out.mean().backward()
    # every encoder parameter takes part (stages past the deepest tap are not built)
    missing = [name for name, p in model.encoder.named_parameters() if p.grad is None]
    assert not missing


def test_features_follow_smp_convention():
    encoder = smp.encoders.get_encoder('effnet-b0', in_channels=1, depth=5)
    assert encoder.out_channels == [1, 16, 24, 40, 112, 320]
    x = torch.randn(1, 1, 64, 96)
    features = encoder(x)
    assert features[0] is x
    assert [tuple(f.shape[1:]) for f in features[1:]] == [
        (16, 32, 48), (24, 16, 24), (40, 8, 12), (112, 4, 6), (320, 2, 3)]


def test_depth_builds_only_needed_stages():
    shallow = smp.encoders.get_encoder('effnet-b0', depth=3)
    deep = smp.encoders.get_encoder('effnet-b0', depth=5)
    assert shallow.out_channels == [3, 16, 24, 40]
    assert len(shallow.backbone.stages) < len(deep.backbone.stages)
    assert len(shallow(torch.randn(1, 3, 64, 64))) == 4


def test_make_dilated_keeps_weights_and_changes_stride():
    encoder = smp.encoders.get_encoder('effnet-b0')
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.make_dilated(8)
    assert encoder.output_stride == 8
    after = encoder.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert encoder(torch.randn(1, 3, 64, 64))[-1].shape[-2:] == (8, 8)
    with pytest.raises(ValueError, match='output_stride'):
        encoder.make_dilated(4)


def test_set_in_channels_adapts_trained_stem():
    encoder = EffNetEncoder('b0')
    rgb = encoder.backbone.stem.conv.weight.detach().clone()
    encoder.set_in_channels(1, pretrained=True)
    assert encoder.out_channels[0] == 1
    assert torch.allclose(encoder.backbone.stem.conv.weight, rgb.sum(1, keepdim=True))
    encoder.set_in_channels(5, pretrained=False)
    assert encoder.backbone.stem.conv.weight.shape[1] == 5
    assert encoder(torch.randn(1, 5, 64, 64))[1].shape[1] == 16


def test_scse_encoder_names_and_per_tap_options():
    named = smp.Unet('effnet-b0-scse', encoder_weights=None, classes=2)
    assert sum(isinstance(m, SCSE) for m in named.encoder.modules()) == 5
    plain = smp.Unet('effnet-b0', encoder_weights=None, classes=2)
    assert not any(isinstance(m, SCSE) for m in plain.encoder.modules())
    custom = create_smp_model('Unet', 'b0', in_channels=1, classes=2,
                              encoder_options=dict(scse=(False, False, True, True, True),
                                                   drop_path_rate=0.1))
    assert custom.encoder.backbone.scse == (False, False, True, True, True)
    assert custom(torch.randn(2, 1, 64, 64)).shape == (2, 2, 64, 64)


def test_create_smp_model_keeps_decoder_stride_with_options():
    model = create_smp_model('DeepLabV3Plus', 'b0', classes=2, encoder_output_stride=8,
                             encoder_options=dict(scse=True))
    assert model.encoder.output_stride == 8
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 2, 64, 64)


def test_reserved_options_rejected():
    with pytest.raises(TypeError, match='out_indices'):
        EffNetEncoder('b0', out_indices=(1, 2))
