"""TrainingCurvesHook's memory figures: the process's peak and the rise that training added."""
import json
import platform
import textwrap

import pytest

from forked import run_forked_from_a_large_process

# A 1 GiB block lives and dies before training (building a model or loading data can peak so),
# then "training" keeps 128 MiB; the hook's JSON must charge training with the 128 MiB (and some
# noise: under load the kernel's RSS count of a process can move by a few hundred MiB on its own)
# and not with the 1 GiB, and keep the earlier peak as the process's.
RUN = textwrap.dedent('''
    import sys
    from types import SimpleNamespace
    import torch
    from effnet_backbones.allocator import current_rss_bytes
    from tasks.engine.hooks import TrainingCurvesHook
    torch.ones(2**20).sum()  # first kernels and threads: what loads on first use
    block = torch.ones(2**30 // 4)
    del block
    print(current_rss_bytes() / 2**20)
    runner = SimpleNamespace(work_dir=sys.argv[1], iter=0, model=torch.nn.Linear(2, 2),
                             logger=SimpleNamespace(info=print), hooks=[])
    hook = TrainingCurvesHook()
    hook.before_run(runner)
    hook.before_train(runner)
    kept = torch.ones(128 * 2**20 // 4)
    hook.after_train(runner)
''')


@pytest.mark.skipif(platform.system() != 'Linux', reason='the rise needs /proc')
def test_training_is_charged_with_its_own_rise_and_the_process_peak_is_kept(tmp_path):
    # forked from a large process, as from a test worker: the figures must be this process's own
    printed = run_forked_from_a_large_process('-c', RUN, str(tmp_path))
    rss_before_training = float(printed.split()[0])
    curves = json.loads((tmp_path / 'training_curves.json').read_text())
    figures = (rss_before_training, curves['peak_rss_mb'], curves['train_rss_rise_mb'])
    assert 100 <= curves['train_rss_rise_mb'] <= 600, figures
    # the process's peak holds the block; training's rise does not
    assert curves['peak_rss_mb'] >= rss_before_training + 1000, figures


# Training keeps 128 MiB, then a validation holds 768 MiB for a while: the whole rise counts
# the validation, the rise before the first validation only the training.
RUN_WITH_VALIDATION = textwrap.dedent('''
    import sys
    from types import SimpleNamespace
    import torch
    from tasks.engine.hooks import TrainingCurvesHook
    torch.ones(2**20).sum()
    runner = SimpleNamespace(work_dir=sys.argv[1], iter=0, model=torch.nn.Linear(2, 2),
                             logger=SimpleNamespace(info=print), hooks=[],
                             message_hub=SimpleNamespace(get_info=lambda key: None))
    hook = TrainingCurvesHook()
    hook.before_run(runner)
    hook.before_train(runner)
    kept = torch.ones(128 * 2**20 // 4)
    hook.before_val_epoch(runner)
    buffers = torch.ones(768 * 2**20 // 4)
    del buffers
    hook.after_val_epoch(runner, {'mDice': 0.5})
    hook.after_train(runner)
''')


@pytest.mark.skipif(platform.system() != 'Linux', reason='the rise needs /proc')
def test_the_rise_before_the_first_validation_leaves_validation_out(tmp_path):
    run_forked_from_a_large_process('-c', RUN_WITH_VALIDATION, str(tmp_path))
    curves = json.loads((tmp_path / 'training_curves.json').read_text())
    figures = (curves['train_rss_rise_before_val_mb'], curves['train_rss_rise_mb'])
    assert 100 <= curves['train_rss_rise_before_val_mb'] <= 600, figures
    assert curves['train_rss_rise_mb'] >= curves['train_rss_rise_before_val_mb'] + 600, figures
