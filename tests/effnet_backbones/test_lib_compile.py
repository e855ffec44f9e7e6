import pytest
import torch
import torch._dynamo as dynamo

from effnet_backbones import EfficientNet

OPTIONS = [dict(), dict(padding='same', scse=True, output_stride=16), dict(memory_efficient=True),
           dict(with_cp='block', memory_efficient=True)]


pytestmark = pytest.mark.usefixtures('fresh_dynamo')


@pytest.mark.parametrize('options', OPTIONS, ids=str)
def test_backbone_traces_without_graph_breaks(options):
    model = EfficientNet('b0', **options).train()
    explanation = dynamo.explain(model)(torch.randn(2, 3, 64, 64))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize('options', [OPTIONS[0], OPTIONS[2]], ids=str)
def test_compiled_backbone_gives_the_same_outputs_and_gradients(options):
    torch.manual_seed(0)
    model = EfficientNet('b0', **options).train()
    reference = EfficientNet('b0', **options).train()
    reference.load_state_dict(model.state_dict())
    compiled = torch.compile(model, backend='aot_eager')
    x = torch.randn(2, 3, 64, 96)
    for net in (reference, compiled):
        sum(f.pow(2).mean() for f in net(x)).backward()
    for a, b in zip(reference(x), compiled(x)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(reference.named_parameters(), model.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)
