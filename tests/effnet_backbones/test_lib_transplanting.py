"""Transplanting: a trained Bi grown into Bj computes exactly what Bi computed on Bi's channels."""
import pytest
import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn as nn
import torchvision

from effnet_backbones import (EfficientNet, create_backbone, EfficientNetClassifier, EffNetFPN, TransplantError,
                              save_backbone, transplant)
from effnet_backbones.growth import ChannelMap
from effnet_backbones.transplanting import SMP_EXACT, grow_backbone, max_difference

from calibration import calibrate_bn, randomise_affine

ALL_LEVELS = (0, 1, 2, 3, 4)
TOLERANCE = 1e-5


pytestmark = pytest.mark.usefixtures('one_thread')  # tiny tensors: see conftest


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def trained_like(model):
    """Give ``model`` what training leaves behind: non-trivial BN affine parameters and running
    statistics measured on data, so that activations are O(1) at every depth and a statistic
    left uncopied or a leaking channel would show. Statistics come from 4 images of 96 px:
    fewer pixels leave some channels with a tiny running variance, which amplifies float32
    rounding far beyond what a trained network shows."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.weight.data.uniform_(0.5, 1.0, generator=generator)
            module.bias.data.normal_(0.0, 0.2, generator=generator)
            module.reset_running_stats()
            module.momentum = None  # running statistics = the average over the batches seen
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 96, 96, generator=generator))
    return model.eval()


def image(size=64, batch=2):
    return torch.randn(batch, 3, size, size)


def unet(arch, **options):
    return smp.Unet(f'effnet-{arch}', encoder_weights=None, classes=3, **options)


def retinanet(arch):
    return torchvision.models.detection.RetinaNet(EffNetFPN(dict(arch=arch)), num_classes=3)


def outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


def assert_taps_exact(src, dst, x):
    """In float32 a wider 1x1 convolution sums the same products in another order (SIMD blocking),
    which moves taps of magnitude ~5 by 1e-6 to 1e-5 depending on the torch build: exact up to
    rounding, so the bound is relative to the tap's magnitude (1e-5 of its largest value); a leak
    or a wrong copy moves them by O(0.1)."""
    theirs, ours = outputs(src, x), outputs(dst, x)
    assert len(theirs) == len(ours)
    for a, b in zip(theirs, ours):
        assert b.shape[1] >= a.shape[1]
        assert a.std() > 0.1  # the comparison is not between vanishing activations
        assert (a - b[:, :a.shape[1]]).abs().max() <= TOLERANCE * a.abs().max()


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize('pair', [('b0', 'b1'), ('b0', 'b4'), ('b2', 'b3'), ('b0', 'b7'),
                                  ('b2', 'b2')], ids='->'.join)
def test_backbone_taps_are_exact(pair):
    src_arch, dst_arch = pair
    x = image()
    src = trained_like(EfficientNet(src_arch, out_indices=ALL_LEVELS))
    # b5-b7 default to BN eps 1e-3 (torchvision's); growing needs the source's eps
    dst = EfficientNet(dst_arch, out_indices=ALL_LEVELS, norm_eps=src.norm_eps)
    transplant(src, dst)
    assert_taps_exact(src, dst, x)


@pytest.mark.parametrize('src_scse,dst_scse', [(True, True), ((False, True), True)])
def test_scse_taps_grow_or_start_as_identity(src_scse, dst_scse):
    x = image()
    src = trained_like(EfficientNet('b0', out_indices=(2, 3), scse=src_scse))
    for p in src.taps.parameters():  # trained gates, not the initial ones
        p.data.normal_(0, 0.3)
    dst = EfficientNet('b2', out_indices=(2, 3), scse=dst_scse)
    transplant(src, dst)
    assert_taps_exact(src, dst, x)


def test_taps_are_matched_by_level_not_slot():
    x = image()
    src = trained_like(EfficientNet('b0', out_indices=(1, 2, 3, 4), scse=(False, True, False, True)))
    for p in src.taps.parameters():
        p.data.normal_(0, 0.3)
    dst = EfficientNet('b3', out_indices=(2, 4), scse=True)
    transplant(src, dst)
    theirs, ours = outputs(src, x), outputs(dst, x)
    for a, b in zip([theirs[1], theirs[3]], ours):
        assert (a - b[:, :a.shape[1]]).abs().max() <= TOLERANCE


def test_classifier_logits_are_exact():
    x = image()
    src = trained_like(EfficientNetClassifier('b0', num_classes=10))
    dst = EfficientNetClassifier('b2', num_classes=10)
    transplant(src, dst)
    assert (outputs(src, x) - outputs(dst, x)).abs().max() <= TOLERANCE


@pytest.mark.parametrize('attention', [None, 'scse'])
def test_unet_logits_are_exact(attention):
    x = image()
    src = trained_like(unet('b0', decoder_attention_type=attention))
    dst = unet('b2', decoder_attention_type=attention)
    report = transplant(src, dst)
    theirs, ours = outputs(src, x), outputs(dst, x)
    assert theirs.abs().max() > 0.1
    # float32 summation order in the wider convs, relative to the logits' scale (measured up to
    # 6e-6 of it; a wrongly copied tensor moves them by 1e-2 and more)
    assert (theirs - ours).abs().max() <= TOLERANCE * theirs.abs().max()
    assert report.params == n_params(dst) and report.copied == n_params(src)
    assert {p.name for p in report.parts} >= {'encoder.backbone.stem', 'decoder', 'segmentation_head'}


def test_unet_decoder_maps_skip_channels_after_the_upsampled_ones():
    # b0 -> b2 widens both the head (320 -> 352) and the first skip (112 -> 120) feeding block 0
    src, dst = trained_like(unet('b0')), unet('b2')
    transplant(src, dst)
    theirs = src.decoder.blocks[0].conv1[0].weight
    ours = dst.decoder.blocks[0].conv1[0].weight
    assert torch.equal(ours[:, :320], theirs[:, :320])
    assert torch.equal(ours[:, 352:464], theirs[:, 320:])
    assert (ours[:, 320:352] == 0).all() and (ours[:, 464:] == 0).all()


def test_other_exact_smp_decoder():
    x = image()
    src = trained_like(smp.FPN('effnet-b0', encoder_weights=None, classes=2))
    dst = smp.FPN('effnet-b2', encoder_weights=None, classes=2)
    transplant(src, dst)
    assert max_difference(src, dst, x).relative <= TOLERANCE


def test_retinanet_backbone_fpn_and_heads_are_exact():
    x = image()
    src = retinanet('b0')
    trained_like(src.backbone)
    dst = retinanet('b2')
    transplant(src, dst)
    with torch.no_grad():
        theirs, ours = src.eval().backbone(x), dst.eval().backbone(x)
        assert list(theirs) == list(ours) == ['p3', 'p4', 'p5', 'p6', 'p7']
        for level in theirs:  # the FPN reads the taps through 1x1 convs with zeroed new inputs
            assert theirs[level].abs().max() > 0.05
            assert ((theirs[level] - ours[level]).abs().max()
                    <= TOLERANCE * theirs[level].abs().max())
        heads = src.head(list(theirs.values())), dst.head(list(ours.values()))
    for key in ('cls_logits', 'bbox_regression'):
        assert ((heads[0][key] - heads[1][key]).abs().max()
                <= TOLERANCE * heads[0][key].abs().max())


def test_checkpoints_as_source(tmp_path):
    x = image()
    tv = trained_like(torchvision.models.efficientnet_b0())
    reference = create_backbone('b0', out_indices=ALL_LEVELS, pretrained=tv.state_dict()).eval()
    dst = EfficientNet('b2', out_indices=ALL_LEVELS)
    transplant(tv.state_dict(), dst)
    assert_taps_exact(reference, dst, x)

    path = tmp_path / 'b0.pth'
    save_backbone(reference, path)  # our own format rebuilds the saved backbone
    dst = EfficientNet('b1', out_indices=(3, 4))
    transplant(str(path), dst)
    assert (outputs(reference, x)[4] - outputs(dst, x)[1][:, :320]).abs().max() <= TOLERANCE


# ----------------------------------------------------------------------------- what exact means
def test_exact_mode_zeroes_only_the_leaks():
    src, dst = trained_like(EfficientNet('b0')), EfficientNet('b4')
    transplant(src, dst)
    project = dst.stages[2][0].project.conv.weight[:, :, 0, 0]  # 240 -> 56 (b0: 144 -> 40)
    assert torch.equal(project[:40, :144], src.stages[2][0].project.conv.weight[:, :, 0, 0])
    assert (project[:40, 144:] == 0).all()  # new inputs into old outputs
    assert (project[40:] != 0).all()  # new outputs keep their initialisation: they learn
    norm = dst.stages[2][0].project.norm
    assert torch.equal(norm.running_var[:40], src.stages[2][0].project.norm.running_var)
    assert torch.equal(norm.running_var[40:], torch.ones(16))  # new channels: initial statistics
    appended = dst.stages[2][3].project.norm
    assert (appended.weight == 0).all() and (appended.bias == 0).all()


def test_plain_mode_copies_slices_only():
    x = image()
    src = trained_like(EfficientNet('b0'))
    exact, plain = EfficientNet('b2'), EfficientNet('b2')
    plain.load_state_dict(exact.state_dict())
    exact_report = transplant(src, exact)
    plain_report = transplant(src, plain, mode='plain')
    assert plain_report.zeroed == 0 < exact_report.zeroed
    assert plain_report.copied == exact_report.copied == n_params(src)
    weight = plain.stages[1][0].expand.conv.weight
    assert torch.equal(weight[:96, :16], src.stages[1][0].expand.conv.weight)
    assert (weight[:96, 16:] != 0).all()
    assert (plain.stages[1][2].project.norm.weight == 1).all()
    assert max_difference(src, plain, x) > 1e-2
    assert max_difference(src, exact, x) <= TOLERANCE


# ----------------------------------------------------------------------------- report
def test_report_adds_up():
    with torch.device('meta'):  # figures only: no arithmetic needed
        src, dst = EfficientNet('b0'), EfficientNet('b7', norm_eps=1e-5)
    report = transplant(src, dst)
    assert [p.name for p in report.parts] == ['stem'] + [f'stages.{s}' for s in range(7)]
    assert report.params == n_params(dst) == sum(p.params for p in report.parts)
    assert report.copied == n_params(src)
    assert report.share == pytest.approx(n_params(src) / n_params(dst))
    for stage, part in enumerate(report.stages):
        assert part.copied == n_params(src.stages[stage])
        assert part.params == n_params(dst.stages[stage])
        assert 0 < part.share < 1
        kept = len(src.stages[stage])
        assert part.sources == tuple(range(kept)) + (None,) * (len(dst.stages[stage]) - kept)
    # b0 stage 5 has 4 blocks, b7 has 13: 9 appended identities, 2 norm tensors each zeroed
    appended_norms = sum(dst.stages[5][k].project.norm.weight.numel() * 2 for k in range(4, 13))
    assert report.part('stages.5').zeroed > appended_norms
    assert 'stages.5' in report.summary() and report.to_dict()['copied'] == report.copied


# ----------------------------------------------------------------------------- training
def test_grown_unet_trains_new_channels_and_blocks():
    x, target = image(size=32), torch.randint(0, 3, (2, 32, 32))
    src, dst = unet('b0'), unet('b2')
    transplant(src, dst)
    dst.train()
    optimizer = torch.optim.SGD(dst.parameters(), lr=0.05)
    reached = set()
    for step in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(dst(x), target).backward()
        grads = {name: p.grad for name, p in dst.named_parameters()}
        if step == 0:  # the identity block's last norm and the zeroed decoder inputs learn at once
            assert grads['encoder.backbone.stages.1.2.project.norm.weight'].abs().sum() > 0
            assert grads['decoder.blocks.0.conv1.0.weight'][:, 320:352].abs().sum() > 0
        reached |= {name for name, grad in grads.items() if grad is not None and grad.abs().sum() > 0}
        optimizer.step()
    assert reached == {name for name, _ in dst.named_parameters()}
    # new channels of a widened layer and an appended block's inner weights moved
    new_rows = dst.encoder.backbone.stages[6][0].project.conv.weight[320:]
    assert grads['encoder.backbone.stages.6.0.project.conv.weight'][320:].abs().sum() > 0
    assert new_rows.abs().sum() > 0
    assert grads['encoder.backbone.stages.1.2.expand.conv.weight'].abs().sum() > 0


# ----------------------------------------------------------------------------- bad input
def _error(src, dst, *words, **kwargs):
    with pytest.raises(TransplantError) as info:
        transplant(src, dst, **kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, message
    return message


def test_smaller_destination():
    _error(EfficientNet('b2'), EfficientNet('b0'), 'efficientnet_b2', 'efficientnet_b0', 'smaller')


@pytest.mark.parametrize('option,value,words', [
    ('padding', 'same', ("'same'", "'symmetric'", 'padding')),
    ('act_layer', 'relu', ('SiLU', 'ReLU', 'act')),
    ('norm_eps', 1e-3, ('0.001', '1e-05', 'norm_eps')),
    ('norm_layer', 'gn', ('batchnorm', 'GroupNorm', 'norm')),
    ('in_chans', 1, ('in_chans', '3', '1')),
    ('output_stride', 16, ('output_stride', '32', '16')),
])
def test_mismatched_settings(option, value, words):
    _error(EfficientNet('b0'), EfficientNet('b1', **{option: value}), 'efficientnet_b0',
           'efficientnet_b1', *words)


def test_groupnorm_cannot_widen():
    _error(EfficientNet('b0', norm_layer='gn'), EfficientNet('b2', norm_layer='gn'), 'GroupNorm',
           'efficientnet_b0', 'efficientnet_b2')
    transplant(EfficientNet('b0', norm_layer='gn'), EfficientNet('b1', norm_layer='gn'))  # same widths


def test_task_models_with_different_layers():
    _error(unet('b0'), unet('b2', decoder_attention_type='scse'), 'Unet(efficientnet_b0)',
           'Unet(efficientnet_b2)', 'attention1', 'Identity', 'SCSEModule')
    _error(smp.Unet('effnet-b0', encoder_weights=None, classes=3),
           smp.Unet('effnet-b1', encoder_weights=None, classes=2), 'segmentation_head',
           'smaller', 'source 3, destination 2')


def test_checkpoint_that_is_not_an_efficientnet(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save(torchvision.models.resnet18().state_dict(), path)
    _error(str(path), EfficientNet('b4'), 'resnet.pth', 'efficientnet_b4', 'not an EfficientNet')
    _error({'weight': torch.zeros(3)}, EfficientNet('b4'), 'efficientnet_b4', 'not an EfficientNet')


def test_tf_port_checkpoint_into_symmetric_destination():
    state = timm.create_model('tf_efficientnet_b0').state_dict()
    _error(state, EfficientNet('b2'), 'efficientnet_b0', 'efficientnet_b2', "'same'",
           "'symmetric'", source='timm_tf')


def test_taps_the_source_does_not_have():
    _error(EfficientNet('b0', out_indices=(2, 3)), EfficientNet('b2', out_indices=(1, 2, 3)),
           'efficientnet_b0', 'efficientnet_b2', '[1, 2, 3]', '[2, 3]', '[1]')
    _error(EfficientNet('b0', out_indices=(3,), scse=True), EfficientNet('b2', out_indices=(3,)),
           'efficientnet_b0', 'efficientnet_b2', 'scSE')


def test_models_of_different_kinds():
    _error(unet('b0'), EfficientNet('b2'), "'encoder.backbone'", 'destination')
    _error(EfficientNet('b0'), torchvision.models.resnet18(), 'ResNet', 'no EfficientNet')
    _error(smp.UnetPlusPlus('effnet-b0', encoder_weights=None),
           smp.UnetPlusPlus('effnet-b1', encoder_weights=None), 'UnetPlusPlus', 'efficientnet_b1',
           "mode='plain'")
    with pytest.raises(ValueError, match='mode'):
        transplant(EfficientNet('b0'), EfficientNet('b1'), mode='fast')


def test_channel_map_of_a_concatenation():
    joined = ChannelMap.concat([ChannelMap.leading(320, 352), ChannelMap.leading(112, 120)])
    assert joined.runs == ((0, 0, 320), (320, 352, 112))
    assert joined.new_runs() == [(320, 32), (464, 8)]
    with pytest.raises(TransplantError, match='do not fit'):
        ChannelMap.leading(24, 16)


# ----------------------------------------------------------------------------- relative checks
# Random networks calibrated as tests/calibration.py does (BN statistics of 4 images of 128 px;
# at 96 px some deep channels get a tiny running variance that amplifies float32 rounding up to
# 4e-5), compared relatively: float32 rounding measures 0.6e-6 .. 3.6e-6 of the largest output
# here, a wrong copy or a missing share O(1). In float64 every case below differs by 1e-15 ..
# 3e-14: nothing but rounding (figures per decoder and mode in docs/transplant.md).
RELATIVE = 1e-5
MODE_IDS = ('exact', 'net2wider')


def calibrated(model, seed=0):
    """``model`` with drawn BN affine parameters and conv biases and BN statistics of a batch."""
    randomise_affine(model, seed)
    batch = torch.randn(4, 3, 128, 128, generator=torch.Generator().manual_seed(seed + 1))
    return calibrate_bn(model, batch)


def assert_function_kept(src, dst, x, channels='source'):
    """``dst`` computes ``src`` on ``x`` to ``RELATIVE``, on activations of order one."""
    theirs = outputs(src, x)
    for tensor in [theirs] if isinstance(theirs, torch.Tensor) else theirs:
        assert tensor.abs().max() > 0.1  # not a comparison between vanishing activations
    difference = max_difference(src, dst, x, channels=channels)
    assert difference.relative <= RELATIVE, difference.describe()
    return difference


def smp_model(decoder, arch):
    """An smp model on our encoder; 'Unet-scse' is the U-Net with decoder scSE attention."""
    name, _, attention = decoder.partition('-')
    options = dict(decoder_attention_type=attention) if attention else {}
    return getattr(smp, name)(f'effnet-{arch}', encoder_weights=None, classes=3, **options)


SMP_DECODERS = ('Unet', 'Unet-scse', 'FPN', 'DeepLabV3', 'DeepLabV3Plus', 'Segformer')


def test_every_decoder_listed_as_exact_is_tested():
    assert {decoder.partition('-')[0] for decoder in SMP_DECODERS} == set(SMP_EXACT)


@pytest.mark.parametrize('mode', MODE_IDS)
@pytest.mark.parametrize('decoder', SMP_DECODERS)
def test_smp_decoders_keep_the_function(decoder, mode):
    """B0 -> B2 widens every tap; each decoder's logits (whose width does not change) are the
    source's in both modes. Measured relative differences (float32): 0.6e-6 .. 1.6e-6, U-Net
    with decoder scSE 1.6e-6 .. 3.0e-6."""
    src, dst = calibrated(smp_model(decoder, 'b0')), smp_model(decoder, 'b2')
    transplant(src, dst, mode=mode)
    assert assert_function_kept(src, dst, image(batch=1)).scope == 'whole tensors'


def test_net2wider_backbone_taps_replicate_every_channel():
    x = image()
    src = calibrated(EfficientNet('b0', out_indices=ALL_LEVELS, scse=(False, True, False, True, True)))
    for p in src.taps.parameters():  # trained gates, not the initial ones
        p.data.normal_(0, 0.3)
    dst = EfficientNet('b4', out_indices=ALL_LEVELS, scse=True)  # taps 0 and 2 gain scSE
    transplant(src, dst, mode='net2wider')
    difference = assert_function_kept(src, dst, x, channels='all')
    assert difference.scope == ('every channel against the source channel it replicates '
                                '(16 -> 24, 24 -> 32, 40 -> 56, 112 -> 160, 320 -> 448 on dim 1)')
    # exact mode leaves the new channels at their initialisation: 'all' sees that
    exact = EfficientNet('b4', out_indices=ALL_LEVELS, scse=True)
    transplant(src, exact)
    assert_function_kept(src, exact, x)
    assert max_difference(src, exact, x, channels='all').relative > 1e-2


def test_net2wider_classifier_logits_are_the_source_s():
    src = calibrated(EfficientNetClassifier('b0', num_classes=10))
    dst = EfficientNetClassifier('b4', num_classes=10)
    transplant(src, dst, mode='net2wider')
    assert_function_kept(src, dst, image())


class DetectorOutputs(nn.Module):
    """A torchvision RetinaNet's FPN levels and head outputs for an image batch (its own forward
    decodes boxes, which is not what a transplant has to keep)."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, x):
        levels = list(self.detector.backbone(x).values())
        return levels + list(self.detector.head(levels).values())


@pytest.mark.parametrize('mode', MODE_IDS)
def test_retinanet_levels_and_heads_keep_the_function(mode):
    src, dst = retinanet('b0'), retinanet('b2')
    calibrated(src.backbone)
    for module in src.head.modules():  # trained-like heads: torchvision's init outputs ~1e-3
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
    transplant(src, dst, mode=mode)
    assert assert_function_kept(DetectorOutputs(src), DetectorOutputs(dst), image()).scope == \
        'whole tensors'


def test_net2wider_report_counts_replicas_and_identities():
    src = calibrated(EfficientNet('b0'))
    dst, report = grow_backbone(src, 'b2', mode='net2wider', seed=3)
    assert report.mode == 'net2wider' and report.params == n_params(dst)
    appended = [block for s, stage in enumerate(dst.stages) for block in stage[len(src.stages[s]):]]
    # every module with a source is filled from it; appended blocks keep their init but their
    # last norm, zeroed so that they start as identities (as in exact mode)
    assert report.copied == n_params(dst) - sum(n_params(block) for block in appended)
    assert report.zeroed == sum(2 * block.project.norm.weight.numel() for block in appended)
    assert_function_kept(src, dst, image(), channels='all')


def test_net2wider_noise_follows_the_seed():
    src = EfficientNet('b0', out_indices=(3,))

    def grown(seed):
        torch.manual_seed(0)  # the same initialisation for what the source does not cover
        return grow_backbone(src, 'b2', mode='net2wider', seed=seed)[0].state_dict()
    first, again, other = grown(3), grown(3), grown(4)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first['stages.3.0.expand.conv.weight'],
                           other['stages.3.0.expand.conv.weight'])


def test_net2wider_refuses_what_it_cannot_keep():
    _error(EfficientNet('b0', norm_layer='gn'), EfficientNet('b2', norm_layer='gn'), 'GroupNorm',
           mode='net2wider')
    _error(smp.UnetPlusPlus('effnet-b0', encoder_weights=None),
           smp.UnetPlusPlus('effnet-b1', encoder_weights=None), 'net2wider transplanting',
           'UnetPlusPlus', mode='net2wider')


# ----------------------------------------------------------------------------- max_difference
def test_max_difference_is_a_float_that_says_what_it_compared():
    x = image()
    src = calibrated(EfficientNet('b0', out_indices=(2, 3)))
    dst = EfficientNet('b2', out_indices=(2, 3))
    transplant(src, dst)
    difference = max_difference(src, dst, x)
    assert isinstance(difference, float) and difference <= TOLERANCE
    theirs, ours = outputs(src, x), outputs(dst, x)
    assert float(difference) == max((a.double() - b[:, :a.shape[1]].double()).abs().max().item()
                                    for a, b in zip(theirs, ours))
    assert difference.scope == 'source channels (leading 40 of 48, 112 of 120 on dim 1)'
    assert 'relative' in difference.describe() and difference.scope in difference.describe()
    whole = max_difference(src, src, x, channels='all')
    assert whole == 0.0 and whole.relative == 0.0 and whole.scope == 'whole tensors'


class Scaled(nn.Module):
    """Returns ``[x * first, x * second + shift]``: outputs of very different magnitudes."""

    def __init__(self, first, second, shift=0.0):
        super().__init__()
        self.first, self.second, self.shift = first, second, shift

    def forward(self, x):
        return [x * self.first, x * self.second + self.shift]


def test_max_difference_relative_is_the_worst_tensor_against_its_own_source():
    x = image()
    difference = max_difference(Scaled(1.0, 1000.0), Scaled(1.5, 1000.0, shift=1e-3), x)
    # tensor 0 is off by half its size, tensor 1 by 1e-3 of ~4000: a ratio against the largest
    # output of all would hide tensor 0
    assert float(difference) == pytest.approx(0.5 * x.abs().max().item())
    assert difference.relative == pytest.approx(0.5)
    assert max_difference(Scaled(0.0, 1.0), Scaled(0.0, 1.0), x).relative == 0.0
    assert max_difference(Scaled(0.0, 1.0), Scaled(1.0, 1.0), x).relative == float('inf')


def test_max_difference_refuses_bad_arguments():
    with pytest.raises(ValueError, match="channels must be one of \\('source', 'all'\\)"):
        max_difference(nn.Identity(), nn.Identity(), image(), channels='new')
    with pytest.raises(TransplantError, match='at least as wide'):
        max_difference(nn.Conv2d(3, 4, 1), nn.Conv2d(3, 2, 1), image())
