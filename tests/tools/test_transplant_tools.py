"""tools/transplant.py, the init_from config hook and the growing recipe, on tiny synthetic data."""
import json

import pytest
import torch
from mmengine.config import Config

from effnet_backbones import EfficientNet, TransplantError, create_backbone, save_backbone
from effnet_backbones.registry import MODELS
from seg_data import make_dataset
from tasks.engine import TransplantInitHook, apply_init_from, prepare_train_config
from tasks.engine.data import resolve_from_data
from tasks.engine.transplant import model_config_for, read_state_dict, resolve_checkpoint
from test_tools_train import QUICK, SMALL, options
from calibration import assert_each_tensor_matters, calibrate_bn
from tool_loader import ROOT, run_train_tool, tool

NARROW = {'model.decoder_options.decoder_channels': '[16,16,16,16,16]'}


pytestmark = pytest.mark.usefixtures('one_thread')  # tiny tensors: see conftest


@pytest.fixture(scope='module')
def trained_b0(tmp_path_factory):
    """A 2-iteration B0 U-Net run: (data root, work dir)."""
    data = make_dataset(tmp_path_factory.mktemp('data'))
    work = tmp_path_factory.mktemp('b0')
    torch.manual_seed(0)
    run_train_tool(QUICK, data, work, 2, *options('grow_b0'))
    return data, work


def small_model(arch):
    cfg = Config.fromfile(QUICK)
    cfg.merge_from_dict({key: value for key, value in SMALL.items() if key.startswith('model.')})
    resolve_from_data(cfg)
    return MODELS.build(model_config_for(cfg.model, arch)).eval()


def test_tool_grows_a_trained_unet_exactly(trained_b0, tmp_path):
    _, work = trained_b0
    out = tmp_path / 'b2.pth'
    report_file = tmp_path / 'report.json'
    tool('transplant').main([str(work), '--arch', 'b2', '--out', str(out), '--config', QUICK,
                             '--report', str(report_file), '--cfg-options',
                             *[f'{k}={v}' for k, v in NARROW.items()]])
    source = small_model('b0')
    source.load_state_dict(read_state_dict(resolve_checkpoint(str(work))))
    grown = small_model('b2')
    grown.load_state_dict(torch.load(out, weights_only=True)['state_dict'])  # what load_from does
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert (source(x) - grown(x)).abs().max() <= 1e-5
    report = json.loads(report_file.read_text())
    assert report['source'] == 'SegmentationModel(efficientnet_b0)'
    assert report['destination'] == 'SegmentationModel(efficientnet_b2)'
    assert sum(part['params'] for part in report['parts']) == sum(p.numel() for p in grown.parameters())


def test_init_from_grows_before_the_first_iteration(trained_b0, tmp_path):
    data, work = trained_b0
    grown = tmp_path / 'b1'
    runner = run_train_tool(QUICK, data, grown, 1, *options('grow_b1', **{'model.arch': 'b1'}),
                            'init_from.type=transplant', f'init_from.checkpoint={work}')
    text = (grown / 'transplant_report.txt').read_text()
    assert 'efficientnet_b0) -> SegmentationModel(efficientnet_b1)' in text
    # appended blocks started as identities and have trained for one step only
    norm = runner.model.net.encoder.backbone.stages[1][2].project.norm.weight
    assert norm.abs().max() < 0.01


def test_init_from_leaves_a_resumed_run_alone(tmp_path):
    class Resumed:  # what the hook reads of a runner that resumed at iteration 3
        iter = 3
        work_dir = str(tmp_path)

    TransplantInitHook(checkpoint=str(tmp_path / 'absent.pth')).before_train(Resumed())
    assert not (tmp_path / 'transplant_report.txt').exists()


def test_init_from_errors():
    cfg = Config(dict(model=dict(arch='b0'), init_from=dict(type='grow', checkpoint='x')))
    with pytest.raises(ValueError, match="type='transplant'"):
        apply_init_from(cfg)
    cfg = Config(dict(model=dict(arch='b0'), load_from='a.pth',
                      init_from=dict(type='transplant', checkpoint='x')))
    with pytest.raises(ValueError, match='load_from'):
        apply_init_from(cfg)
    cfg = Config(dict(model=dict(arch='b0'), init_from=dict(type='transplant', checkpoint='x', lr=1)))
    with pytest.raises(ValueError, match='lr'):
        apply_init_from(cfg)


def test_task_checkpoint_that_does_not_fit_the_config(trained_b0, tmp_path):
    _, work = trained_b0
    with pytest.raises(TransplantError, match='does not fit the model config'):
        tool('transplant').main([str(work), '--arch', 'b2', '--out', str(tmp_path / 'x.pth'),
                                 '--config', QUICK])  # trained with a narrower decoder


def test_tool_grows_a_backbone_checkpoint(tmp_path):
    x = torch.randn(2, 3, 64, 64)
    # calibrated statistics: the deep taps are of order one, not 1e-8, so they are compared
    src = calibrate_bn(EfficientNet('b0', out_indices=(2, 3, 4), scse=True), x)
    save_backbone(src, tmp_path / 'b0.pth')
    tool('transplant').main([str(tmp_path / 'b0.pth'), '--arch', 'b3', '--out', str(tmp_path / 'b3.pth')])
    grown = create_backbone(pretrained=str(tmp_path / 'b3.pth')).eval()
    assert grown.arch == 'b3' and grown.out_indices == (2, 3, 4) and all(grown.scse)
    with torch.no_grad():
        theirs, ours = src(x), grown(x)
    on_source_channels = [b[:, :a.shape[1]] for a, b in zip(theirs, ours)]
    assert_each_tensor_matters(on_source_channels, theirs, rtol=1e-5)


def test_recipe_grows_b0_b2_b4_each_at_its_resolution():
    stages = [Config.fromfile(str(ROOT / f'configs/grow/unet_grow_{arch}.py')) for arch in ('b0', 'b2', 'b4')]
    assert [cfg.model.arch for cfg in stages] == ['b0', 'b2', 'b4']
    assert [cfg.train_dataloader.dataset.crop_size for cfg in stages] == [224, 260, 380]
    assert stages[0].get('init_from') is None
    assert stages[1].init_from.checkpoint.endswith('unet_grow_b0')
    assert stages[2].init_from.checkpoint.endswith('unet_grow_b2')
    cfg = prepare_train_config(str(ROOT / 'configs/grow/unet_grow_b4.py'))
    hook = cfg.custom_hooks[-1]
    assert hook['type'] == 'effnet_backbones.TransplantInitHook' and hook['model_cfg']['arch'] == 'b4'
