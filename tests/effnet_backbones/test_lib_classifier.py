"""effnet_backbones.classifier: the classifier equals torchvision's, part by part and in logits."""
from functools import lru_cache

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.ops import StochasticDepth

from calibration import assert_close_relative, calibrate_bn, n_params, randomise_affine
from effnet_backbones import EfficientNetClassifier
from effnet_backbones.layers import Conv2dSame, DropPath
from effnet_backbones.weights import convert_state_dict
from reference import ARCHS, REFERENCE

HEAD_FEATURE = 8  # torchvision: features[0] stem, [1..7] stages, [8] head conv


@pytest.fixture(scope='module')
def torchvision_pair():
    """(torchvision b0 calibrated on ``batch``, our classifier loaded from it, batch)."""
    torch.manual_seed(0)
    batch = torch.randn(2, 3, 64, 64)
    theirs = torchvision.models.efficientnet_b0(weights=None, num_classes=10)
    calibrate_bn(randomise_affine(theirs, seed=1), batch)
    ours = EfficientNetClassifier('b0', num_classes=10).eval()
    ours.load_state_dict(convert_state_dict(theirs.state_dict(), source='torchvision'))  # strict
    return theirs, ours, batch


@lru_cache(maxsize=None)
def meta_pair(arch):
    """Our classifier and torchvision's for ``arch`` on the meta device (shapes only)."""
    with torch.device('meta'):
        return (EfficientNetClassifier(arch),
                getattr(torchvision.models, f'efficientnet_{arch}')(weights=None))


@torch.no_grad()
def test_logits_and_features_equal_torchvision_in_eval(torchvision_pair):
    theirs, ours, batch = torchvision_pair
    features = ours.forward_features(batch)
    assert features.shape == (2, 1280, 2, 2) and features.std() > 0.1
    assert_close_relative(features, theirs.features(batch), rtol=1e-5)
    logits = ours(batch)
    assert logits.shape == (2, 10)
    assert_close_relative(logits, theirs(batch), rtol=1e-5)


@torch.no_grad()
def test_logits_equal_torchvision_in_train_mode_without_dropout(torchvision_pair):
    _, ours, batch = torchvision_pair
    theirs = torchvision.models.efficientnet_b0(weights=None, num_classes=10, dropout=0.0,
                                                stochastic_depth_prob=0.0)
    theirs.load_state_dict(convert_state_dict(ours.state_dict(), target='torchvision'))
    plain = EfficientNetClassifier('b0', num_classes=10, dropout=0.0, drop_path_rate=0.0)
    plain.load_state_dict(ours.state_dict())
    logits = plain.train()(batch)
    assert_close_relative(logits, theirs.train()(batch), rtol=1e-5)
    assert_close_relative(list(plain.buffers()), list(theirs.buffers()), rtol=1e-6)


@pytest.mark.parametrize('arch', ARCHS)
def test_every_part_has_torchvisions_parameter_count(arch):
    ours, theirs = meta_pair(arch)
    assert n_params(ours) == n_params(theirs) == REFERENCE[arch][0]
    assert n_params(ours.stem) == n_params(theirs.features[0])
    assert len(ours.stages) == 7
    for stage, blocks in enumerate(ours.stages):
        assert len(blocks) == len(theirs.features[stage + 1]) == REFERENCE[arch][3][stage]
        assert n_params(blocks) == n_params(theirs.features[stage + 1]), stage
    assert n_params(ours.head) == n_params(theirs.features[HEAD_FEATURE])
    assert ours.classifier.weight.shape == theirs.classifier[1].weight.shape


@pytest.mark.parametrize('arch', ARCHS)
def test_dropout_stochastic_depth_and_bn_settings_follow_torchvision(arch):
    ours, theirs = meta_pair(arch)
    assert ours.dropout.p == theirs.classifier[0].p == REFERENCE[arch][2]
    ours_rates = [block.drop_path.p if isinstance(block.drop_path, DropPath) else None
                  for stage in ours.stages for block in stage]
    their_blocks = [block for stage in theirs.features[1:HEAD_FEATURE] for block in stage]
    assert all(isinstance(block.stochastic_depth, StochasticDepth) for block in their_blocks)
    # torchvision keeps the module on every block but applies it only with the residual
    their_rates = [block.stochastic_depth.p if block.use_res_connect else None
                   for block in their_blocks]
    assert ours_rates == pytest.approx(their_rates)
    assert max(rate for rate in ours_rates if rate is not None) > 0.15
    settings = lambda model: {(m.eps, m.momentum) for m in model.modules()  # noqa: E731
                              if isinstance(m, nn.BatchNorm2d)}
    assert settings(ours) == settings(theirs)
    assert len(settings(ours)) == 1


def test_options_reach_the_network():
    model = EfficientNetClassifier('b0', num_classes=7, in_chans=1, dropout=0.0,
                                   drop_path_rate=0.0, padding='same', act_layer='relu6')
    assert model.stem.conv.weight.shape[1] == 1 and model.classifier.out_features == 7
    assert model.dropout.p == 0.0
    assert {m.p for m in model.modules() if isinstance(m, DropPath)} == {0.0}
    assert isinstance(model.stem.conv, Conv2dSame)
    assert isinstance(model.head.act, nn.ReLU6)
    logits = model.eval()(torch.randn(2, 1, 65, 70))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()


def test_gn_classifier_trains():
    model = EfficientNetClassifier('b0', num_classes=3, norm_layer='gn')
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([0, 2]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
