"""effnet_backbones.growth: channel maps and growing layers into wider ones, function-preserving."""
import pytest
import torch
import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

from effnet_backbones.growth import (ChannelMap, Growth, TransplantError, grow_module, grow_modules,
                                     replica_sources)

pytestmark = pytest.mark.usefixtures('one_thread')


def randomise(module, seed):
    """Every parameter and BN statistic of ``module`` drawn at random (variances positive)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if not tensor.is_floating_point():
                continue
            tensor.copy_(torch.randn(tensor.shape, generator=gen))
            if name.endswith('running_var'):
                tensor.abs_().add_(0.1)
    return module


def spread(x_src, channel_map, seed=0):
    """A destination input: ``x_src``'s channels placed by ``channel_map``, random elsewhere."""
    gen = torch.Generator().manual_seed(seed)
    shape = (x_src.shape[0], channel_map.dst_size, *x_src.shape[2:])
    x = torch.randn(shape, generator=gen) * 3
    for s, d, n in channel_map.runs:
        x[:, d:d + n] = x_src[:, s:s + n]
    return x


def gather(y_dst, channel_map):
    """The destination channels that hold the source channels, in source order."""
    return torch.cat([y_dst[:, d:d + n] for _, d, n in channel_map.runs], 1)


# ----------------------------------------------------------------------------- ChannelMap
def test_leading_map():
    grown = ChannelMap.leading(3, 5)
    assert grown.runs == ((0, 0, 3),) and grown.is_leading
    assert list(grown.dst_runs()) == [(0, 3)] and grown.new_runs() == [(3, 2)]
    assert ChannelMap.leading(4, 4).new_runs() == []
    empty = ChannelMap.leading(0, 4)
    assert empty.runs == () and empty.is_leading and empty.new_runs() == [(0, 4)]
    with pytest.raises(TransplantError, match='5 source channels do not fit in 4 destination'):
        ChannelMap.leading(5, 4)


def test_concatenated_map_offsets_each_part():
    joined = ChannelMap.concat([ChannelMap.leading(2, 4), ChannelMap.leading(3, 3),
                                ChannelMap.leading(1, 6)])
    assert (joined.src_size, joined.dst_size) == (6, 13)
    assert joined.runs == ((0, 0, 2), (2, 4, 3), (5, 7, 1))
    assert list(joined.dst_runs()) == [(0, 2), (4, 3), (7, 1)]
    assert joined.new_runs() == [(2, 2), (8, 5)]
    assert not joined.is_leading
    nested = ChannelMap.concat([joined, ChannelMap.leading(2, 2)])
    assert nested.runs[-1] == (6, 13, 2) and nested.new_runs() == [(2, 2), (8, 5)]
    assert ChannelMap.concat([]).runs == ()


def test_a_concatenation_that_does_not_grow_is_leading():
    assert ChannelMap.concat([ChannelMap.leading(2, 2), ChannelMap.leading(3, 3)]).is_leading


# ----------------------------------------------------------------------------- single layers
def test_dense_conv_copies_old_channels_zeroes_leaks_and_keeps_new_init():
    src = randomise(nn.Conv2d(3, 4, 3, padding=1, bias=True), seed=1)
    dst = randomise(nn.Conv2d(5, 6, 3, padding=1, bias=True), seed=2)
    initial = dst.weight.detach().clone(), dst.bias.detach().clone()
    growth = grow_module(src, dst)
    assert growth == Growth(params=6 * 5 * 9 + 6, copied=4 * 3 * 9 + 4, zeroed=4 * 2 * 9)
    assert torch.equal(dst.weight[:4, :3], src.weight) and torch.equal(dst.bias[:4], src.bias)
    assert (dst.weight[:4, 3:] == 0).all()  # new inputs into old outputs
    assert torch.equal(dst.weight[4:], initial[0][4:]) and torch.equal(dst.bias[4:], initial[1][4:])
    x = torch.randn(2, 3, 6, 6)
    wide_x = spread(x, ChannelMap.leading(3, 5))
    torch.testing.assert_close(dst(wide_x)[:, :4], src(x), rtol=1e-5, atol=1e-5)


def test_plain_mode_copies_without_zeroing_so_new_inputs_leak():
    src = randomise(nn.Conv2d(3, 4, 1), seed=1)
    dst = randomise(nn.Conv2d(5, 6, 1), seed=2)
    leak_before = dst.weight.detach()[:4, 3:].clone()
    growth = grow_module(src, dst, exact=False)
    assert growth.zeroed == 0 and growth.copied == 4 * 3 + 4
    assert torch.equal(dst.weight[:4, 3:], leak_before)
    x = torch.randn(2, 3, 4, 4)
    assert (dst(spread(x, ChannelMap.leading(3, 5)))[:, :4] - src(x)).abs().max() > 1e-2


def test_channel_maps_place_inputs_and_outputs():
    src = randomise(nn.Conv2d(5, 3, 1, bias=True), seed=3)
    dst = randomise(nn.Conv2d(9, 7, 1, bias=True), seed=4)
    in_map = ChannelMap.concat([ChannelMap.leading(2, 4), ChannelMap.leading(3, 5)])
    out_map = ChannelMap.concat([ChannelMap.leading(1, 3), ChannelMap.leading(2, 4)])
    growth = grow_module(src, dst, in_map=in_map, out_map=out_map)
    assert growth.zeroed == 3 * (9 - 5)  # every old output, every new input
    x = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(gather(dst(spread(x, in_map)), out_map), src(x), rtol=1e-5,
                               atol=1e-5)
    assert torch.equal(dst.bias[[0, 3, 4]], src.bias)


def test_depthwise_conv_copies_filters_per_channel():
    src = randomise(nn.Conv2d(4, 4, 3, padding=1, groups=4), seed=5)
    dst = randomise(nn.Conv2d(6, 6, 3, padding=1, groups=6), seed=6)
    growth = grow_module(src, dst, in_map=ChannelMap.leading(1, 6))  # ignored: one map
    assert growth == Growth(params=6 * 9 + 6, copied=4 * 9 + 4, zeroed=0)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(dst(spread(x, ChannelMap.leading(4, 6)))[:, :4], src(x))


def test_linear_grows_like_a_one_by_one_conv():
    src, dst = randomise(nn.Linear(3, 2), seed=7), randomise(nn.Linear(5, 4), seed=8)
    growth = grow_module(src, dst)
    assert growth == Growth(params=4 * 5 + 4, copied=2 * 3 + 2, zeroed=2 * 2)
    x = torch.randn(6, 3)
    wide_x = torch.cat([x, torch.randn(6, 2)], 1)
    torch.testing.assert_close(dst(wide_x)[:, :2], src(x))


@pytest.mark.parametrize('dst_cls', [nn.BatchNorm2d, FrozenBatchNorm2d])
def test_batch_norm_copies_affine_and_statistics(dst_cls):
    src = randomise(nn.BatchNorm2d(4, eps=1e-5), seed=9)
    src.num_batches_tracked.fill_(17)
    dst = dst_cls(6)
    growth = grow_module(src, dst)
    assert growth.copied == 8 and growth.zeroed == 0
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        assert torch.equal(getattr(dst, name)[:4], getattr(src, name)), name
    assert torch.equal(dst.running_var[4:], torch.ones(2))  # new channels keep the init
    assert torch.equal(dst.weight[4:], torch.ones(2)) and torch.equal(dst.bias[4:], torch.zeros(2))
    if dst_cls is nn.BatchNorm2d:
        assert int(dst.num_batches_tracked) == 17
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(dst.eval()(spread(x, ChannelMap.leading(4, 6)))[:, :4],
                               src.eval()(x), rtol=1e-5, atol=1e-5)


def test_layers_that_do_not_act_per_channel_copy_only_at_equal_shapes():
    src, dst = randomise(nn.GroupNorm(2, 8), seed=10), nn.GroupNorm(2, 8)
    assert grow_module(src, dst) == Growth(params=16, copied=16)
    assert torch.equal(dst.weight, src.weight)
    with pytest.raises(TransplantError, match=r'norm: GroupNorm layers cannot grow'):
        grow_module(nn.GroupNorm(2, 8), nn.GroupNorm(2, 16), where='norm')


@pytest.mark.parametrize('src,dst,match', [
    (nn.Conv2d(4, 8, 1), nn.Conv2d(4, 6, 1),
     r'stem: the destination is smaller than the source '
     r'\(output channels: source 8, destination 6\)'),
    (nn.Conv2d(4, 8, 1), nn.Linear(4, 8), r'stem: source is Conv2d, destination is Linear'),
    (nn.Conv2d(4, 8, 3), nn.Conv2d(4, 8, 5), r"stem: convolutions differ in \{'kernel_size'"),
    (nn.Conv2d(4, 8, 3, stride=2), nn.Conv2d(4, 8, 3), r"differ in \{'stride'"),
    (nn.BatchNorm2d(4, eps=1e-3), nn.BatchNorm2d(8), r'stem: norm eps differs: source 0.001, '
                                                     r'destination 1e-05'),
    (nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 8, 3, groups=2), r'groups=2.*equal width'),
    (nn.BatchNorm2d(4), nn.GroupNorm(2, 4), r'source is BatchNorm2d, destination is GroupNorm'),
])
def test_mismatched_layers_are_refused_with_the_reason(src, dst, match):
    with pytest.raises(TransplantError, match=match):
        grow_module(src, dst, where='stem')


def test_a_map_of_the_wrong_size_is_refused():
    message = r'conv: input channels map is 3 -> 5 channels but the layers have 4 -> 6'
    with pytest.raises(TransplantError, match=message):
        grow_module(nn.Conv2d(4, 4, 1), nn.Conv2d(6, 6, 1), in_map=ChannelMap.leading(3, 5),
                    where='conv')


# ----------------------------------------------------------------------------- whole models
class TwoBranch(nn.Module):
    """Two convs whose outputs are concatenated and fused, then normalised: a decoder in small."""

    def __init__(self, a, b, out):
        super().__init__()
        self.a = nn.Conv2d(3, a, 3, padding=1)
        self.b = nn.Sequential(nn.Conv2d(3, b, 1), nn.BatchNorm2d(b), nn.SiLU())
        self.fuse = nn.Conv2d(a + b, out, 1)
        self.norm = nn.BatchNorm2d(out)

    def forward(self, x):
        return self.norm(self.fuse(torch.cat([self.a(x), self.b(x)], 1)))


def grown_pair(seed=0):
    """(source TwoBranch(2, 3, 4), randomised wider TwoBranch(4, 5, 7)) both in eval mode."""
    return (randomise(TwoBranch(2, 3, 4), seed).eval(),
            randomise(TwoBranch(4, 5, 7), seed + 1).eval())


CONCAT_MAP = {'fuse': (ChannelMap.concat([ChannelMap.leading(2, 4), ChannelMap.leading(3, 5)]),
                       None)}


@torch.no_grad()
def test_grown_model_computes_the_source_on_its_old_channels():
    src, dst = grown_pair()
    report = grow_modules(src, dst, maps=CONCAT_MAP)
    assert set(report) == {'a', 'b.0', 'b.1', 'fuse', 'norm'}
    assert report['fuse'].zeroed == 4 * (9 - 5)
    assert sum(g.copied for g in report.values()) == sum(p.numel() for p in src.parameters())
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(dst(x)[:, :4], src(x), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_without_the_concatenation_map_or_in_plain_mode_the_function_changes():
    x = torch.randn(2, 3, 6, 6)
    src, dst = grown_pair()
    grow_modules(src, dst)  # the fuse input is not the leading slice: wrong placement
    assert (dst(x)[:, :4] - src(x)).abs().max() > 1e-2
    src, dst = grown_pair()
    grow_modules(src, dst, maps=CONCAT_MAP, exact=False)
    assert (dst(x)[:, :4] - src(x)).abs().max() > 1e-2


@torch.no_grad()
def test_rename_maps_destination_names_and_unmatched_modules_stay_new():
    src = randomise(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)), seed=3).eval()
    dst = nn.Module()
    dst.body = randomise(nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6)), seed=4)
    dst.extra = nn.Conv2d(6, 2, 1)
    before = dst.extra.weight.clone()
    rename = lambda name: name[len('body.'):] if name.startswith('body.') else None  # noqa: E731
    report = grow_modules(src, dst, rename=rename)
    assert report['extra'] == Growth(params=6 * 2 + 2)  # nothing copied, nothing zeroed
    assert torch.equal(dst.extra.weight, before)
    assert report['body.0'].copied == 4 * 3 + 4
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(dst.body.eval()(x)[:, :4], src(x), rtol=1e-5, atol=1e-5)


def test_a_different_activation_at_the_same_name_is_refused():
    src = nn.Sequential(nn.Conv2d(3, 4, 1), nn.SiLU())
    dst = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU())
    with pytest.raises(TransplantError, match=r'1: source has SiLU, destination has ReLU'):
        grow_modules(src, dst)


# ----------------------------------------------------------------------------- net2wider
def replicate(x_src, channel_map):
    """A destination input in net2wider terms: every channel the source channel it copies."""
    return x_src[:, list(channel_map.sources())]


def copies_sum(weight, in_map):
    """``weight`` (out, dst_in, ...) summed over the copies of each source input channel."""
    index = torch.tensor(in_map.sources())
    return torch.zeros(weight.shape[0], in_map.src_size, *weight.shape[2:],
                       dtype=weight.dtype).index_add_(1, index, weight)


def test_replication_map_is_deterministic_spread_and_keeps_old_channels():
    grown = ChannelMap.leading(5, 13)
    sources = grown.sources()
    assert sources[:5] == (0, 1, 2, 3, 4)  # old channels stay where they were
    assert sources[5:] == replica_sources(5, 13) == ChannelMap.leading(5, 13).sources()[5:]
    new = sources[5:]
    assert sorted(new[:5]) == [0, 1, 2, 3, 4]  # every channel copied once before any twice
    assert new[5:] == new[:3]  # the k-th new channel copies perm[k % src_size]
    # pinned: a grown checkpoint must come out the same in every process and Python version
    assert new == (1, 0, 2, 4, 3, 1, 0, 2)
    assert ChannelMap.leading(4, 4).sources() == (0, 1, 2, 3)
    assert len({replica_sources(64, 96), replica_sources(64, 100)}) == 2  # seeded by both sizes
    with pytest.raises(TransplantError, match='no source channel'):
        ChannelMap.leading(0, 4).sources()
    with pytest.raises(TransplantError, match='do not fit'):
        replica_sources(5, 4)


def test_concatenated_replication_offsets_each_part():
    first, second = ChannelMap.leading(2, 4), ChannelMap.leading(3, 5)
    joined = ChannelMap.concat([first, second])
    assert joined.sources() == first.sources() + tuple(2 + s for s in second.sources())
    # a part with nothing to replicate is fine until its replicas are asked for
    assert ChannelMap.concat([first, ChannelMap.leading(0, 0)]).sources() == first.sources()
    with pytest.raises(TransplantError, match='destination channel 4 of 6 has no source'):
        ChannelMap.concat([first, ChannelMap.leading(0, 2)]).sources()
    # nothing new: nothing to record, and every channel is its own source
    unchanged = ChannelMap.concat([ChannelMap.leading(2, 2), ChannelMap.leading(3, 3)])
    assert unchanged.replicas is None and unchanged.sources() == (0, 1, 2, 3, 4)


def test_net2wider_dense_conv_replicates_outputs_and_splits_inputs():
    src = randomise(nn.Conv2d(3, 4, 3, padding=1, bias=True), seed=1)
    dst = randomise(nn.Conv2d(7, 9, 3, padding=1, bias=True), seed=2)
    in_map, out_map = ChannelMap.leading(3, 7), ChannelMap.leading(4, 9)
    growth = grow_module(src, dst, mode='net2wider', generator=torch.Generator().manual_seed(0))
    assert growth == Growth(params=9 * 7 * 9 + 9, copied=9 * 7 * 9 + 9, zeroed=0)
    rows = list(out_map.sources())
    # the shares of each source weight add up to it, per output element and kernel position
    torch.testing.assert_close(copies_sum(dst.weight, in_map), src.weight[rows], rtol=1e-6,
                               atol=1e-6)
    assert torch.equal(dst.bias, src.bias[rows])
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(dst(replicate(x, in_map)), replicate(src(x), out_map), rtol=1e-5,
                               atol=1e-5)


def test_net2wider_without_noise_divides_by_the_copy_count():
    src, dst = randomise(nn.Linear(3, 2), seed=7), randomise(nn.Linear(5, 4), seed=8)
    in_map, out_map = ChannelMap.leading(3, 5), ChannelMap.leading(2, 4)
    grow_module(src, dst, mode='net2wider', noise=0.0)
    copies = torch.bincount(torch.tensor(in_map.sources()), minlength=3).float()
    expected = src.weight[list(out_map.sources())][:, list(in_map.sources())] / \
        copies[list(in_map.sources())]
    torch.testing.assert_close(dst.weight, expected)
    assert set(copies.tolist()) == {1.0, 2.0}  # some inputs copied, some not


def test_net2wider_noise_is_seeded_and_leaves_unshared_weights_alone():
    def grown(seed):
        dst = nn.Conv2d(6, 4, 1)
        grow_module(randomise(nn.Conv2d(4, 4, 1), seed=1), dst, mode='net2wider',
                    generator=torch.Generator().manual_seed(seed))
        return dst.weight.detach()
    assert torch.equal(grown(0), grown(0)) and not torch.equal(grown(0), grown(1))
    src = randomise(nn.Conv2d(4, 4, 1), seed=1)
    alone = [i for i, s in enumerate(ChannelMap.leading(4, 6).sources())
             if ChannelMap.leading(4, 6).sources().count(s) == 1]
    assert alone and torch.equal(grown(0)[:, alone], src.weight[:, alone])  # one copy: share 1


def test_net2wider_depthwise_and_batch_norm_copy_per_channel():
    channel_map = ChannelMap.leading(4, 7)
    index = list(channel_map.sources())
    conv = randomise(nn.Conv2d(4, 4, 3, padding=1, groups=4), seed=5)
    wide_conv = nn.Conv2d(7, 7, 3, padding=1, groups=7)
    assert grow_module(conv, wide_conv, mode='net2wider').copied == 7 * 9 + 7
    assert torch.equal(wide_conv.weight, conv.weight[index])
    norm = randomise(nn.BatchNorm2d(4), seed=9)
    wide_norm = nn.BatchNorm2d(7)
    assert grow_module(norm, wide_norm, mode='net2wider') == Growth(params=14, copied=14)
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        assert torch.equal(getattr(wide_norm, name), getattr(norm, name)[index]), name
    x = torch.randn(2, 4, 5, 5)
    layers, wide = nn.Sequential(conv, norm).eval(), nn.Sequential(wide_conv, wide_norm).eval()
    torch.testing.assert_close(wide(replicate(x, channel_map)), replicate(layers(x), channel_map))


@pytest.mark.parametrize('src,dst,match', [
    (nn.GroupNorm(2, 8), nn.GroupNorm(2, 16), r'GroupNorm layers cannot grow'),
    (nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 8, 3, groups=2), r'groups=2.*equal width'),
])
def test_net2wider_refuses_layers_that_mix_channels_at_a_new_width(src, dst, match):
    with pytest.raises(TransplantError, match=match):
        grow_module(src, dst, mode='net2wider')


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match=r"mode must be one of \('exact', 'plain', 'net2wider'\)"):
        grow_module(nn.Conv2d(4, 4, 1), nn.Conv2d(6, 6, 1), mode='wide')


@torch.no_grad()
def test_net2wider_model_computes_the_source_on_every_channel():
    src, dst = grown_pair()
    report = grow_modules(src, dst, maps=CONCAT_MAP, mode='net2wider')
    assert all(g.copied == g.params and g.zeroed == 0 for g in report.values())
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(dst(x), replicate(src(x), ChannelMap.leading(4, 7)), rtol=1e-5,
                               atol=1e-5)
    # without the concatenation map, the fuse conv splits the wrong channels
    src, dst = grown_pair()
    grow_modules(src, dst, mode='net2wider')
    assert (dst(x) - replicate(src(x), ChannelMap.leading(4, 7))).abs().max() > 1e-2


def test_net2wider_noise_breaks_the_symmetry_of_copies():
    """Copies of a hidden channel compute the same value; with equal outgoing weights they would
    also get equal gradients forever. The noise makes the gradients of their rows differ."""
    def gradients(noise):
        src = randomise(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Tanh(), nn.Conv2d(4, 2, 1)), seed=3)
        dst = nn.Sequential(nn.Conv2d(3, 6, 1), nn.Tanh(), nn.Conv2d(6, 2, 1))
        grow_modules(src, dst, mode='net2wider', noise=noise,
                     generator=torch.Generator().manual_seed(0))
        dst(torch.randn(2, 3, 4, 4)).square().sum().backward()
        return dst[0].weight.grad[:, :, 0, 0]
    sources = ChannelMap.leading(4, 6).sources()
    pairs = [(sources[j], j) for j in range(4, 6)]  # a source channel and its copy
    for noise, differ in ((0.0, False), (1e-2, True)):
        grads = gradients(noise)
        for old, new in pairs:
            assert (not torch.allclose(grads[old], grads[new], rtol=1e-4, atol=0)) == differ, noise
