"""tools/train.py --compile [MEMORY_BUDGET]: the model compiled in place, the same training."""
import json

import pytest
import torch

from seg_data import make_dataset
from tasks.engine import prepare_train_config
from tool_loader import ROOT, cfg_options, run_train_tool

QUICK = str(ROOT / 'configs/unet_effb0_quick.py')
SMALL = {
    'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
    'train_dataloader.persistent_workers': False, 'train_dataloader.dataset.crop_size': 64,
    'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False,
    'model.decoder_options.decoder_channels': [16, 16, 16, 16, 16],
    'train_cfg.val_interval': 100, 'default_hooks.checkpoint.interval': 100,
    'default_hooks.logger.interval': 1,
}
# inductor's partitioner without its C++ compile time
BACKEND = 'aot_eager_decomp_partition'


pytestmark = pytest.mark.usefixtures('fresh_dynamo')


def _losses(work):
    return [loss for _, loss in json.loads((work / 'training_curves.json').read_text())['loss']]


def test_compiled_run_with_a_budget_trains_as_the_eager_run(tmp_path):
    data = make_dataset(tmp_path / 'data')
    runs = {}
    for name, extra in (('eager', []), ('compiled', ['--compile', '0.3'])):
        torch.manual_seed(0)
        work = tmp_path / name
        arguments = [*extra, *cfg_options(SMALL, f'compile_{name}',
                                          **({'compile.backend': BACKEND} if extra else {}))]
        runs[name] = run_train_tool(QUICK, data, work, 3, *arguments)
    compiled = runs['compiled'].model
    assert getattr(compiled, '_compiled_call_impl', None) is not None
    assert runs['eager'].model._compiled_call_impl is None
    assert 'model compiled in place' in next((tmp_path / 'compiled').glob('*/*.log')).read_text()
    assert runs['compiled'].iter == 3
    # same data, seeds and weights: the compiled step computes the same losses
    torch.testing.assert_close(_losses(tmp_path / 'compiled'), _losses(tmp_path / 'eager'),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('options, match', [
    (dict(compile=True, cfg_options={'compile.memory_budget': 2}), r'compile\.memory_budget=2'),
    (dict(cfg_options={'compile': 'yes'}), r"compile='yes': expected True, False or a dict"),
])
def test_bad_compile_options_fail_before_anything_is_built(tmp_path, options, match):
    with pytest.raises(ValueError, match=match):
        prepare_train_config(QUICK, work_dir=str(tmp_path / 'work'), **options)
    assert not (tmp_path / 'work').exists()


def test_compile_flag_sets_the_config_key(tmp_path):
    data = make_dataset(tmp_path / 'data')
    cfg = prepare_train_config(QUICK, work_dir=str(tmp_path / 'w'), data_root=str(data),
                               compile=0.5)
    assert cfg.compile == dict(memory_budget=0.5)
    cfg = prepare_train_config(QUICK, work_dir=str(tmp_path / 'w'), data_root=str(data),
                               compile=True)
    assert cfg.compile == {}
