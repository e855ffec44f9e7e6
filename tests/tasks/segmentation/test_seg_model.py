"""SegmentationModel: any input size is padded and cropped back, it learns, and a class count
mismatch is explained."""
import numpy as np
import pytest
import torch

from effnet_backbones.registry import MODELS
from seg_data import blob_pair
from tasks.segmentation import SegSample


def tiny_model(**kwargs):
    cfg = dict(type='effnet_backbones.SegmentationModel', arch='b0', in_channels=1, num_classes=3,
               decoder_options=dict(decoder_channels=(16, 16, 16, 16, 16)))
    return MODELS.build({**cfg, **kwargs})


def test_any_input_size_is_padded_and_cropped_back():
    model = tiny_model()
    samples = [SegSample('a', (50, 70), gt_mask=torch.randint(0, 3, (50, 70))),
               SegSample('b', (64, 40), gt_mask=torch.randint(0, 3, (64, 40)))]
    batch = model.data_preprocessor(dict(inputs=[torch.randn(1, 50, 70), torch.randn(1, 64, 40)],
                                         data_samples=samples))
    assert batch['inputs'].shape == (2, 1, 64, 96)
    losses = model(**batch, mode='loss')  # training on sizes that are not multiples of 32
    assert all(torch.isfinite(value) for value in losses.values())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 250, 333)).shape == (1, 3, 250, 333)
        predicted = model(**batch, mode='predict')
    assert [tuple(s.pred_mask.shape) for s in predicted] == [(50, 70), (64, 40)]


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = tiny_model()
    images, masks = zip(*(_blob_tensor(seed) for seed in range(2)))
    samples = [SegSample(f'{i}', (64, 64), gt_mask=m) for i, m in enumerate(masks)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        loss = sum(model(torch.stack(images), samples, mode='loss').values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def _blob_tensor(seed):
    image, mask = blob_pair((64, 64), seed)
    return torch.from_numpy(image[None].astype(np.float32) / 4000), torch.from_numpy(mask.astype(np.int64))


def test_class_count_mismatch_is_explained():
    model = tiny_model(num_classes=2)
    sample = SegSample('x.png', (32, 32), gt_mask=torch.full((32, 32), 2))
    with pytest.raises(ValueError, match='num_classes'):
        model(torch.randn(1, 1, 32, 32), [sample], mode='loss')


def test_channels_last_gives_the_same_losses_and_gradients_in_its_own_layout():
    # float64: in float32 the gradients of a random-init network differ by up to 10-30 % in
    # their ill-conditioned tensors between ANY two summation orders (float32 against float64
    # too), so only float64 shows that the two layouts compute the same function
    torch.manual_seed(0)
    plain = tiny_model(encoder_options=dict(scse=True, shortcut='resnet_d')).double()
    fast = tiny_model(encoder_options=dict(scse=True, shortcut='resnet_d'),
                      channels_last=True).double()
    fast.load_state_dict(plain.state_dict())  # a checkpoint of either layout fits the other
    convs = [m.weight for m in fast.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    images, masks = zip(*(_blob_tensor(seed) for seed in range(2)))
    # odd sides: the padded input is converted, and the logits come back cropped
    images = torch.stack(images)[..., :60, :50].double()
    samples = [SegSample(f'{i}', (60, 50), gt_mask=m[:60, :50]) for i, m in enumerate(masks)]
    grads = []
    for model in (plain, fast):
        losses = model(images, samples, mode='loss')  # training mode: batch statistics
        sum(losses.values()).backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    for name, grad in grads[0].items():
        assert (grads[1][name] - grad).norm() <= 1e-9 * grad.norm() + 1e-15, name
    assert any(g.is_contiguous(memory_format=torch.channels_last) and not g.is_contiguous()
               for g in grads[1].values() if g.dim() == 4)
    plain.eval(), fast.eval()
    with torch.no_grad():
        expected = plain(images)
        got = fast(images)
    assert got.shape == expected.shape == (2, 3, 60, 50)
    assert (got - expected).norm() <= 1e-10 * expected.norm()
