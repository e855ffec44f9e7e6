"""tools/train.py, test.py and infer.py end to end on tiny synthetic data (B0, 64 px, 4 iterations):
outputs, resume, AMP gating, schedule rescaling, the CPU profile and every bad input's error."""
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from effnet_backbones.registry import MODELS
from seg_data import CLASSES, make_dataset
from tasks.common.io import DataError
from tasks.engine import (ConfigKeyError, NonFiniteLossError, load_from_local,
                          prepare_train_config, train)
from tasks.engine import config as engine_config
from tool_loader import ROOT, cfg_options, run_train_tool, tool
from tasks.segmentation.losses import SegLoss

QUICK = str(ROOT / 'configs/unet_effb0_quick.py')
MAIN = str(ROOT / 'configs/unet_effb4_medical.py')
SMALL = {  # 2 images of 64 px per batch, no worker processes, a narrow decoder
    'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
    'train_dataloader.persistent_workers': False, 'train_dataloader.dataset.crop_size': 64,
    'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False,
    'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False,
    'model.decoder_options.decoder_channels': [16, 16, 16, 16, 16],
    'train_cfg.val_interval': 2, 'default_hooks.checkpoint.interval': 2,
    'default_hooks.logger.interval': 1,
}


def options(name, **extra):
    """--cfg-options arguments: SMALL, a unique experiment name and ``extra``."""
    return cfg_options(SMALL, name, **extra)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """One 4-iteration run: (data root, work dir, runner)."""
    data = make_dataset(tmp_path_factory.mktemp('data'))
    work = tmp_path_factory.mktemp('work')
    torch.manual_seed(0)
    runner = run_train_tool(QUICK, data, work, 4, *options('trained'))
    return data, work, runner


def test_train_writes_checkpoints_log_and_curves(trained):
    _, work, runner = trained
    assert runner.iter == 4
    assert (work / 'iter_4.pth').is_file() and list(work.glob('best_mDice_iter_*.pth'))
    assert Path((work / 'last_checkpoint').read_text()).name == 'iter_4.pth'
    log = next(work.glob('*/*.log')).read_text()
    # the CPU allocator line says whether freed memory goes back to the system, and why not
    for field in ('lr:', 'eta:', 'loss:', 'loss_dice:', 'loss_ce:', 'mDice:', 'CPU allocator:'):
        assert field in log
    curves = json.loads((work / 'training_curves.json').read_text())
    assert [point[0] for point in curves['loss']] == [1, 2, 3, 4]
    assert curves['metric_key'] == 'mDice' and [p[0] for p in curves['metric']] == [2, 4]
    assert cv2.imread(str(work / 'training_curves.png')) is not None


def test_checkpoints_need_and_get_the_torch26_fix(trained):
    _, work, _ = trained
    with pytest.raises(Exception, match='[Ww]eights only'):
        torch.load(work / 'iter_4.pth')  # what mmengine 0.10 does on torch >= 2.6
    checkpoint = load_from_local(str(work / 'iter_4.pth'))
    assert checkpoint['meta']['iter'] == 4 and 'message_hub' in checkpoint


def test_resume_continues_from_saved_iteration(trained, tmp_path):
    data, work, _ = trained
    resumed = tmp_path / 'work'
    shutil.copytree(work, resumed)
    (resumed / 'iter_4.pth').unlink()  # as if the run had been killed during iteration 3
    (resumed / 'last_checkpoint').write_text(str(resumed / 'iter_2.pth'))
    runner = run_train_tool(QUICK, data, resumed, 4, '--resume', *options('resumed'))
    assert runner.iter == 4 and (resumed / 'iter_4.pth').is_file()
    logs = sorted(resumed.glob('*/*.log'))
    assert 'resumed epoch: 0, iter: 2' in logs[-1].read_text()
    assert 'Iter(train) [1/4]' not in logs[-1].read_text()  # iterations 1-2 were not redone
    curves = json.loads((resumed / 'training_curves.json').read_text())
    assert [point[0] for point in curves['loss']] == [1, 2, 3, 4]


def test_test_tool_prints_table_and_writes_flat_json(trained, tmp_path, capsys):
    data, work, _ = trained
    out = tmp_path / 'metrics.json'
    checkpoint = next(work.glob('best_mDice_iter_*.pth'))
    tool('test').main([QUICK, str(checkpoint), '--data-root', str(data), '--out', str(out),
                       '--work-dir', str(tmp_path), *options('tested')])
    metrics = json.loads(out.read_text())
    # the class names are the data's (classes.txt), kept in the checkpoint
    assert {'mDice', 'mIoU', 'aAcc', 'Dice.background', 'IoU.rim'} <= set(metrics)
    assert all(not isinstance(value, (dict, list)) for value in metrics.values())
    printed = capsys.readouterr().out
    assert 'mDice' in printed and 'background' in printed
    # the same numbers from the checkpoint's own predictions, counted here with numpy
    expected = dice_by_hand(work / 'unet_effb0_quick.py', checkpoint, data / 'val')
    assert len(expected) == 3  # every class occurs in the val masks
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-9), name
    assert metrics['mDice'] == pytest.approx(np.nanmean([expected[f'Dice.{c}'] for c in
                                                         CLASSES]))


def dice_by_hand(config: Path, checkpoint: Path, split: Path) -> dict:
    """Dice per class of a checkpoint's predictions on ``split`` (whole images, 255 ignored)."""
    from mmengine.config import Config
    from tasks.segmentation.inference import SegInferencer

    inferencer = SegInferencer(Config.fromfile(str(config)), str(checkpoint))
    names = CLASSES
    hits, predicted, actual = (np.zeros(len(names)) for _ in range(3))
    for image_path in sorted((split / 'images').iterdir()):
        _, prediction = inferencer.predict(image_path)
        truth = cv2.imread(str(split / 'masks' / image_path.name), cv2.IMREAD_UNCHANGED)
        scored = truth != 255
        for index in range(len(names)):
            pred_c, true_c = (prediction == index) & scored, (truth == index) & scored
            hits[index] += (pred_c & true_c).sum()
            predicted[index] += pred_c.sum()
            actual[index] += true_c.sum()
    with np.errstate(invalid='ignore', divide='ignore'):
        dice = 2 * hits / (predicted + actual)
    return {f'Dice.{name}': value for name, value in zip(names, dice) if not np.isnan(value)}


def test_infer_tool_writes_mask_and_overlay_per_image(trained, tmp_path):
    data, work, _ = trained
    odd = tmp_path / 'odd.png'
    cv2.imwrite(str(odd), (np.random.rand(45, 77) * 4000).astype(np.uint16))  # 45 x 77 px
    out = tmp_path / 'out'
    saved_config = str(work / 'unet_effb0_quick.py')  # the run's config, as the work dir keeps it
    written = tool('infer').main([saved_config, str(work / 'iter_4.pth'), str(data / 'val/images'),
                                  str(data / 'train/images/*.png'), str(odd), '--out-dir', str(out)])
    assert len(written) == 2 * 4
    # s0.png is in both folders: the outputs carry the folders rather than overwrite each other
    assert {p.name for p in written} >= {'val_images_s0_mask.png', 'train_images_s0_mask.png',
                                          's1_overlay.png'}
    mask = cv2.imread(str(out / 'odd_mask.png'), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (45, 77) and mask.max() < 3
    assert cv2.imread(str(out / 'odd_overlay.png')).shape == (45, 77, 3)
    with pytest.raises(FileNotFoundError, match='nothing_here'):
        tool('infer').main([saved_config, str(work / 'iter_4.pth'), str(tmp_path / 'nothing_here*.png'),
                            '--out-dir', str(out)])


def test_infer_tool_refuses_to_overwrite_unless_told(trained, tmp_path, monkeypatch):
    from tasks.segmentation.model import SegmentationModel
    data, work, _ = trained
    used = []  # the settings each prediction ran with
    predict_logits = SegmentationModel.predict_logits
    monkeypatch.setattr(SegmentationModel, 'predict_logits', lambda self, inputs: used.append(
        dict(self.test_cfg)) or predict_logits(self, inputs))
    saved_config = str(work / 'unet_effb0_quick.py')
    arguments = [saved_config, str(work / 'iter_4.pth'), str(data / 'val/images/s0.png'),
                 '--out-dir', str(tmp_path)]
    tool('infer').main(arguments)
    plain = cv2.imread(str(tmp_path / 's0_mask.png'), cv2.IMREAD_UNCHANGED)
    (tmp_path / 's0_overlay.png').write_bytes(b'mine')
    with pytest.raises(FileExistsError, match=r's0_mask\.png exists \(and 1 more.*--overwrite'):
        tool('infer').main(arguments)
    assert (tmp_path / 's0_overlay.png').read_bytes() == b'mine'  # nothing was written
    # with the prediction tricks (32 px windows: several per 50 x 70 image)
    tool('infer').main([*arguments, '--overwrite', '--tta', '--sliding-window', '--overlap',
                        '0.25', '--largest-component',
                        '--cfg-options', 'model.test_cfg.window=32'])
    assert used[0]['mode'] == 'whole' and used[0]['tta'] is None
    assert used[-1]['mode'] == 'slide' and used[-1]['window'] == (32, 32)
    assert used[-1]['tta'] == dict(flips=('h', 'v'), rot90=False) and used[-1]['largest_component']
    tricks = cv2.imread(str(tmp_path / 's0_mask.png'), cv2.IMREAD_UNCHANGED)
    assert tricks.shape == plain.shape == (50, 70)
    assert cv2.imread(str(tmp_path / 's0_overlay.png')).shape == (50, 70, 3)


def test_test_tool_evaluates_with_the_prediction_tricks(trained, tmp_path, monkeypatch):
    from mmengine.config import Config
    from tasks.segmentation.model import SegmentationModel
    data, work, _ = trained
    checkpoint = work / 'iter_4.pth'
    used = []  # the settings each prediction of the evaluation ran with
    predict_logits = SegmentationModel.predict_logits
    monkeypatch.setattr(SegmentationModel, 'predict_logits', lambda self, inputs: used.append(
        dict(self.test_cfg)) or predict_logits(self, inputs))
    out = tmp_path / 'metrics.json'
    tool('test').main([QUICK, str(checkpoint), '--data-root', str(data), '--out', str(out),
                       '--work-dir', str(tmp_path), '--tta', '--sliding-window', '--overlap',
                       '0.25', '--largest-component',
                       *options('tested_tricks', **{'model.test_cfg.window': 32})])
    assert used and all(cfg == dict(mode='slide', window=(32, 32), overlap=0.25, gaussian=True,
                                    window_batch_size=4, largest_component=True,
                                    tta=dict(flips=('h', 'v'), rot90=False)) for cfg in used)
    metrics = json.loads(out.read_text())
    # the numbers of the same tricks set directly in the model's test_cfg
    config = Config.fromfile(str(work / 'unet_effb0_quick.py'))
    config.model.test_cfg = dict(mode='slide', window=32, overlap=0.25, largest_component=True,
                                 tta=dict(flips=('h', 'v'), rot90=False))
    config.dump(str(tmp_path / 'tricks.py'))
    expected = dice_by_hand(tmp_path / 'tricks.py', checkpoint, data / 'val')
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-9), name


def test_infer_command_line_runs_from_the_checkout(trained, tmp_path):
    data, work, _ = trained
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools/infer.py'), QUICK, str(work / 'iter_4.pth'),
         str(data / 'val/images/s0.png'), '--out-dir', str(tmp_path),
         '--cfg-options', 'model.decoder_options.decoder_channels=[16,16,16,16,16]'],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / 's0_mask.png').is_file() and (tmp_path / 's0_overlay.png').is_file()


class NanAfterLoss(SegLoss):
    """A test loss that turns NaN after ``after`` calls (one call per training iteration)."""

    default_name = 'loss_test'

    def __init__(self, after: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.after, self.calls = after, 0

    def compute(self, logits, target):
        self.calls += 1
        return logits.mean() * (math.nan if self.calls > self.after else 1.0)


def test_nan_loss_names_iteration_and_keeps_checkpoints(tmp_path):
    MODELS.register_module(name='NanAfterLossForTest', module=NanAfterLoss, force=True)
    data = make_dataset(tmp_path / 'data')
    cfg = prepare_train_config(
        QUICK, work_dir=str(tmp_path / 'work'), data_root=str(data), max_iters=4,
        cfg_options={**SMALL, 'experiment_name': 'nan', 'train_cfg.val_interval': 10,
                     'model.losses': [dict(type='effnet_backbones.NanAfterLossForTest', after=2)]})
    with pytest.raises(NonFiniteLossError, match='at iteration 3'):
        train(cfg)
    work = tmp_path / 'work'
    assert sorted(p.name for p in work.glob('*.pth')) == ['iter_2.pth']
    assert Path((work / 'last_checkpoint').read_text()).name == 'iter_2.pth'
    state = load_from_local(str(work / 'iter_2.pth'))['state_dict']
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


def _broken(tmp_path, how):
    root = make_dataset(tmp_path / 'data')
    how(root)
    return root


@pytest.mark.parametrize('how,expected', [
    (lambda r: (r / 'train/masks/s1.png').unlink(), (DataError, 's1.png')),
    (lambda r: [p.unlink() for p in (r / 'val/images').iterdir()], (DataError, 'val/images')),
    (lambda r: cv2.imwrite(str(r / 'val/masks/s0.png'), np.full((50, 70), 4, np.uint8)),
     (DataError, 's0.png')),
], ids=['image-without-mask', 'empty-val-split', 'bad-mask-values'])
def test_bad_data_stops_the_train_tool_with_the_file_named(tmp_path, how, expected):
    error, named = expected
    root = _broken(tmp_path, how)
    with pytest.raises(error, match=named):
        run_train_tool(QUICK, root, tmp_path / 'w', 2, *options(f'bad{id(how)}'))
    assert not list((tmp_path / 'w').glob('*.pth'))


def test_wrong_data_root_and_config_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        tool('train').main([QUICK, '--data-root', str(tmp_path / 'nowhere')])
    with pytest.raises(FileNotFoundError, match='missing_config'):
        tool('train').main([str(tmp_path / 'missing_config.py')])


@pytest.mark.parametrize('body,named', [
    ("train_dataloder = dict(batch_size=2)\n", "'train_dataloder'; did you mean 'train_dataloader'"),
    ("model = dict(num_clases=3)\n", "'model.num_clases'"),
    ("val_evaluator = dict(ignore_indx=255)\n", "did you mean 'ignore_index'"),
])
def test_config_key_typos_are_named(tmp_path, body, named):
    config = tmp_path / 'typo.py'
    config.write_text(f"_base_ = ['{QUICK}']\n{body}")
    with pytest.raises(ConfigKeyError) as info:
        tool('train').main([str(config), '--work-dir', str(tmp_path / 'w')])
    assert named in str(info.value)


def test_amp_is_gated_on_cuda(monkeypatch):
    logged = []
    monkeypatch.setattr(engine_config, '_log', lambda message, level=0: logged.append(message))
    cfg = prepare_train_config(QUICK, amp=True)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert any('no CUDA' in message and 'float32' in message for message in logged)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: True)
    cfg = prepare_train_config(QUICK, amp=True)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.dtype == 'bfloat16'


def test_max_iters_rescales_the_schedule():
    cfg = prepare_train_config(MAIN, max_iters=40, cfg_options={'cpu_profile': None})
    assert cfg.train_cfg.max_iters == 40 and cfg.train_cfg.val_interval == 2
    assert cfg.default_hooks.checkpoint.interval == 2
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 2) and (cosine.begin, cosine.end) == (2, 40)


def test_max_iters_on_a_cpu_keeps_the_cpu_profiles_proportions(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    profile = prepare_train_config(MAIN)  # the CPU run: 400 iterations, validation every 50
    assert (profile.train_cfg.max_iters, profile.train_cfg.val_interval,
            profile.default_hooks.checkpoint.interval) == (400, 50, 100)
    for spelled in (dict(max_iters=200), dict(cfg_options={'train_cfg.max_iters': 200})):
        half = prepare_train_config(MAIN, **spelled)
        assert (half.train_cfg.max_iters, half.train_cfg.val_interval,
                half.default_hooks.checkpoint.interval) == (200, 25, 50)
        assert half.train_dataloader.batch_size == 4  # the profile's other options still apply
        ends = [(s.get('begin', 0), s.get('end')) for s in half.param_scheduler]
        assert ends == [(b // 2, e // 2) for b, e in ((s.get('begin', 0), s.get('end'))
                                                       for s in profile.param_scheduler)]


def test_training_tools_use_the_caching_cpu_allocator_by_default():
    cfg = prepare_train_config(MAIN)
    assert cfg.cpu_allocator == 'caching'


def test_cpu_profile_applies_only_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cpu = prepare_train_config(MAIN)
    assert cpu.train_cfg.max_iters == cpu.cpu_profile.max_iters
    assert cpu.train_dataloader.batch_size == 4 and cpu.train_dataloader.dataset.crop_size == 128
    assert prepare_train_config(MAIN, max_iters=10).train_cfg.max_iters == 10
    off = prepare_train_config(MAIN, cfg_options={'cpu_profile': None})
    assert off.train_cfg.max_iters == 4000 and off.train_dataloader.batch_size == 8
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    gpu = prepare_train_config(MAIN)
    assert gpu.train_cfg.max_iters == 4000 and gpu.train_dataloader.dataset.crop_size == 256
    # 128 px crops miss a small class more often: two thirds of them centred on foreground
    assert cpu.train_dataloader.dataset.foreground_ratio == pytest.approx(0.66)
    assert gpu.train_dataloader.dataset.foreground_ratio == pytest.approx(0.33)
    # the medical recipe predicts in windows of the crop it trains on, on either machine
    assert dict(cpu.model.test_cfg) == dict(mode='slide', window=128)
    assert dict(gpu.model.test_cfg) == dict(mode='slide', window=256)


def train_log_of_a_fresh_process(tmp_path, name, dropped_variables, **extra):
    """The log of a 1-iteration tools/train.py run in its own process, whose environment lacks
    the variables ``dropped_variables`` accepts (settings made by the run itself would otherwise
    stay in, or come too late for, this test process)."""
    data = make_dataset(tmp_path / 'data')
    environ = {key: value for key, value in os.environ.items() if not dropped_variables(key)}
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools/train.py'), QUICK, '--work-dir', str(tmp_path / 'w'),
         '--data-root', str(data), '--max-iters', '1',
         *options(name, **extra, **{'train_cfg.val_interval': 1})],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environ)
    assert result.returncode == 0, result.stderr[-2000:]
    return next((tmp_path / 'w').glob('*/*.log')).read_text()


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='glibc malloc only')
def test_lean_cpu_allocator_is_applied_and_logged(tmp_path):
    log = train_log_of_a_fresh_process(tmp_path, 'lean_allocator',
                                       lambda key: key.startswith('MALLOC_'), cpu_allocator='lean')
    assert 'CPU allocator: lean, glibc malloc mmap_threshold=131072, trim_threshold=131072' in log


@pytest.mark.skipif(platform.system() != 'Linux' or not shutil.which('c++')
                    or not shutil.which('ninja'),
                    reason='the caching allocator needs Linux, a C++ compiler and ninja')
def test_caching_cpu_allocator_is_installed_and_logged(tmp_path):
    log = train_log_of_a_fresh_process(tmp_path, 'caching_allocator', lambda key: False,
                                       cpu_allocator='caching')
    assert ('CPU allocator: caching (min_bytes=131072, slack_bytes=0; freed tensors reused, '
            'memory held at most the live peak)') in log


def test_cpu_kernel_cache_is_raised_before_training_and_logged(tmp_path):
    from effnet_backbones.kernel_cache import KERNEL_CACHE_VARIABLES

    log = train_log_of_a_fresh_process(tmp_path, 'kernel_cache',
                                       lambda key: key in KERNEL_CACHE_VARIABLES)
    assert ('CPU kernel cache: 4096 entries (LRU_CACHE_CAPACITY, '
            'ONEDNN_PRIMITIVE_CACHE_CAPACITY)') in log


def test_cpu_kernel_cache_none_leaves_the_environment_and_bad_values_are_named(monkeypatch):
    from mmengine.config import Config

    from effnet_backbones.kernel_cache import KERNEL_CACHE_VARIABLES
    from tasks.engine.runner import _apply_cpu_kernel_cache

    for name in KERNEL_CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert _apply_cpu_kernel_cache(Config(dict(cpu_kernel_cache=None))) is None
    assert not any(name in os.environ for name in KERNEL_CACHE_VARIABLES)
    with pytest.raises(ValueError, match=r"cpu_kernel_cache must be a positive int .*got 'big'"):
        _apply_cpu_kernel_cache(Config(dict(cpu_kernel_cache='big')))
    assert _apply_cpu_kernel_cache(Config(dict(cpu_kernel_cache=2048))).startswith(
        'CPU kernel cache: 2048 entries')
    assert os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'] == '2048'
    # on CUDA the convolutions are not oneDNN's: nothing set
    monkeypatch.delenv('ONEDNN_PRIMITIVE_CACHE_CAPACITY')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert _apply_cpu_kernel_cache(Config(dict(cpu_kernel_cache=2048))) is None
    assert 'ONEDNN_PRIMITIVE_CACHE_CAPACITY' not in os.environ


def test_bad_cpu_allocator_is_named_before_anything_is_written(tmp_path):
    data = make_dataset(tmp_path / 'data')
    with pytest.raises(ValueError, match=r"cpu_allocator='fast': expected one of \('default', "
                                         r"'lean', 'caching'\)"):
        run_train_tool(QUICK, data, tmp_path / 'w', 2, *options('bad_allocator',
                                                                cpu_allocator='fast'))
    assert not (tmp_path / 'w').exists() or not list((tmp_path / 'w').rglob('*.pth'))
