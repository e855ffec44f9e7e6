"""Every shipped config's model builds; the medical U-Net builds its backbone exactly once."""
from pathlib import Path

import pytest
from mmengine.config import Config

import effnet_backbones
from effnet_backbones.registry import MODELS
from tasks.engine.data import resolve_from_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def count_backbones(monkeypatch):
    """A list that gets one entry per EfficientNet constructed while the fixture is active."""
    built = []
    original = effnet_backbones.EfficientNet.__init__

    def counting_init(self, *args, **kwargs):
        built.append(kwargs.get('arch', args[0] if args else 'b0'))
        original(self, *args, **kwargs)

    monkeypatch.setattr(effnet_backbones.EfficientNet, '__init__', counting_init)
    return built


def build_model(config: str):
    cfg = Config.fromfile(str(ROOT / 'configs' / config))
    for module in cfg.get('custom_imports', {}).get('imports', []):
        __import__(module)
    resolve_from_data(cfg)  # classes and channels from the (demo) data, as training does
    return MODELS.build(cfg.model)


def test_the_medical_unet_constructs_its_backbone_once(count_backbones):
    model = build_model('unet_effb4_medical.py')
    assert count_backbones == ['b4']
    backbone = model.net.encoder.backbone
    # built with its final options: one input channel, scSE on every tap
    assert backbone.in_chans == 1 and all(backbone.scse) and backbone.stem.conv.in_channels == 1


@pytest.mark.parametrize('decoder,options', [('DeepLabV3Plus', dict(encoder_output_stride=16)),
                                             ('Unet', dict())])
def test_smp_decoders_construct_the_backbone_once(count_backbones, decoder, options):
    model = effnet_backbones.create_smp_model(decoder, 'b0', in_channels=4, classes=2,
                                              encoder_options=dict(drop_path_rate=0.1), **options)
    assert count_backbones == ['b0']
    assert model.encoder.backbone.in_chans == 4


def test_the_volume_recipe_is_the_medical_recipe_on_volumes():
    medical = Config.fromfile(str(ROOT / 'configs' / 'unet_effb4_medical.py'))
    volumes = Config.fromfile(str(ROOT / 'configs' / 'unet_effb4_volumes.py'))
    for key in ('model', 'custom_hooks', 'default_hooks', 'optim_wrapper', 'param_scheduler',
                'train_cfg'):
        assert volumes[key] == medical[key], key
    assert volumes.train_dataloader.dataset.type == 'effnet_backbones.VolumeSliceDataset'
    assert volumes.val_evaluator.type == 'effnet_backbones.VolumeSegMetric'
