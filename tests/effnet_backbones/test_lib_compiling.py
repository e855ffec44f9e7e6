"""compile_model: in-place compilation with an activation-memory budget."""
import pytest
import torch
import torch._functorch.config as functorch_config

from benchmarks.speed import saved_activation_bytes
from effnet_backbones import EfficientNet, compile_model
from effnet_backbones.compiling import check_memory_budget

# inductor's decompositions and partitioner with a no-op compiler: the saving decisions of
# inductor without its C++ compile time
BACKEND = 'aot_eager_decomp_partition'


pytestmark = pytest.mark.usefixtures('fresh_dynamo')


def _twin_models(seed=0):
    torch.manual_seed(seed)
    model = EfficientNet('b0').train()
    twin = EfficientNet('b0').train()
    twin.load_state_dict(model.state_dict())
    return model, twin


def _saved_after_compiling(budgets, x):
    """Saved bytes of one compiled B0 per budget, all compiled in this process in this order."""
    models = []
    for budget in budgets:
        model = _twin_models()[0]
        compile_model(model, memory_budget=budget, backend=BACKEND)
        sum(f.pow(2).mean() for f in model(x)).backward()  # compiles: the saved set is chosen
        models.append(model)
    return [saved_activation_bytes(model, x) for model in models]


@pytest.mark.parametrize('budgets', [(None, 0.3, 1.0), (0.3, 1.0, None)], ids=str)
def test_budget_cuts_the_saved_activations_of_each_model_compiled_with_it(budgets):
    # models of one class share TorchDynamo's graphs unless the budget gives them their own:
    # the first compiled would decide for all, in either order
    saved = dict(zip(budgets, _saved_after_compiling(budgets, torch.randn(2, 3, 64, 64))))
    assert saved[1.0] == saved[None]
    assert saved[0.3] < 0.8 * saved[None], saved  # 0.73x with this backend, 0.32x in inductor


def test_budgeted_compiled_training_equals_eager():
    compiled, eager = _twin_models(seed=1)
    compile_model(compiled, memory_budget=0.2, backend=BACKEND)
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    compiled.double()
    eager.double()
    outs = []
    for model in (eager, compiled):
        features = model(x)
        sum(f.pow(2).mean() for f in features).backward()
        outs.append(features)
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-14)  # summation order only
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-8, atol=1e-12, msg=name)
    # BN running statistics, updated once per step as in eager (some running means are ~1e-18:
    # the means of zero-mean inputs, which summation order alone moves)
    for (name, a), b in zip(eager.named_buffers(), compiled.buffers()):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-12, msg=name)


def test_compiling_in_place_keeps_state_dict_keys_and_the_global_budget():
    model, twin = _twin_models()
    before = functorch_config.activation_memory_budget
    assert compile_model(model, memory_budget=0.5, backend=BACKEND) is model
    model(torch.randn(2, 3, 64, 64))
    assert list(model.state_dict()) == list(twin.state_dict())
    assert functorch_config.activation_memory_budget == before  # patched per call only


@pytest.mark.parametrize('bad', [-0.1, 1.5, '0.5', True])
def test_bad_budget_names_the_value(bad):
    with pytest.raises(ValueError, match=r'memory_budget=.*expected a number in \[0, 1\]'):
        compile_model(EfficientNet('b0'), memory_budget=bad)
    assert check_memory_budget(None) is None
    assert check_memory_budget(1) == 1.0
