"""Our own format rebuilds a backbone by itself, safely."""

import pytest
import torch

from effnet_backbones import (create_backbone,
                              save_backbone)
from weight_refs import (LEVELS, TOL, cached_reference, max_diff, ours_taps)


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_own_format_rebuilds_the_backbone_by_itself(tmp_path, suffix):
    options = dict(out_indices=(2, 3, 4), scse=(False, True, True), in_chans=4, padding='same',
                   norm_eps=1e-3, drop_path_rate=0.1)
    original = create_backbone('efficientnet_b4', **options).eval()
    with torch.no_grad():  # make BN statistics and taps non-trivial
        for name, value in original.state_dict().items():
            if value.is_floating_point():
                value.add_(torch.rand_like(value) * 0.1)
    path = str(tmp_path / f'my_b4{suffix}')
    save_backbone(original, path)

    rebuilt = create_backbone(pretrained=path)
    assert rebuilt.arch == 'b4' and rebuilt.config == original.config
    assert rebuilt.load_report.source == 'effnet_backbones' and not rebuilt.load_report.missing
    x = torch.randn(1, 4, 67, 70)
    assert max_diff(ours_taps(rebuilt, x), ours_taps(original, x)) == 0.0
    # options given now win over saved ones; unbuilt taps are skipped
    shallow = create_backbone(pretrained=path, out_indices=(2, 3))
    assert shallow.out_indices == (2, 3) and shallow.padding == 'same'
    assert any(key.startswith('stages.6') for key in shallow.load_report.skipped)


def test_own_format_name_must_agree(tmp_path):
    path = str(tmp_path / 'my_b2.pth')
    save_backbone(create_backbone('efficientnet_b2', out_indices=(1, 2)), path)
    with pytest.raises(ValueError, match=r"efficientnet_b0.*my_b2\.pth.*efficientnet_b2"):
        create_backbone('efficientnet_b0', pretrained=path)
    assert create_backbone('efficientnet_b2', pretrained=path).arch == 'b2'


def test_own_format_file_is_safe_to_load(tmp_path):
    path = str(tmp_path / 'b0.pth')
    save_backbone(create_backbone('efficientnet_b0'), path)
    saved = torch.load(path, weights_only=True)
    assert saved['format'] == 'effnet_backbones' and saved['config']['arch'] == 'b0'


def test_name_is_detected_from_torchvision_weights(tmp_path):
    ref = cached_reference('torchvision', 'b2')
    path = str(tmp_path / 'efficientnet_b2_rwightman.pth')
    torch.save(ref.state_dict, path)
    model = create_backbone(pretrained=path, out_indices=LEVELS)
    assert model.arch == 'b2'
    assert max_diff(ours_taps(model, ref.x), ref.taps) <= TOL


