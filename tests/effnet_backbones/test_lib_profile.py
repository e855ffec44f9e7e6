import json
import subprocess
import sys
from pathlib import Path

import torch.nn as nn

import describe  # tools/describe.py (tests/conftest.py puts tools/ on sys.path)
from effnet_backbones.profile import count_macs, describe_variants, markdown_table
from reference import ARCHS, REFERENCE, STRIDES

ROOT = Path(__file__).resolve().parents[2]


def test_count_macs_of_a_known_layer():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    assert count_macs(conv, (1, 3, 32, 32)) == 8 * 16 * 16 * 3 * 9 + 8 * 16 * 16 * 10
    depthwise = nn.Conv2d(16, 16, 5, padding=2, groups=16)
    assert count_macs(depthwise, (2, 16, 10, 10)) == 2 * 16 * 10 * 10 * 25


def test_describe_agrees_with_the_reference_table():
    rows = describe_variants()
    assert [row['arch'] for row in rows] == list(ARCHS)
    for row in rows:
        params, res, dropout, _, blocks, skips, taps, gmacs = REFERENCE[row['arch']]
        assert row['params_full'] == params
        assert row['gmacs'] == gmacs
        assert (row['blocks'], row['skip_blocks']) == (blocks, skips)
        assert row['skip_ratio'] == round(skips / blocks, 3)
        assert row['tap_channels'] == list(taps) and row['tap_strides'] == list(STRIDES)
        assert (row['resolution'], row['dropout']) == (res, dropout)
        assert 0 < row['params_backbone'] < params


def test_describe_cli_json_and_markdown(capsys):
    describe.main(['b0', 'efficientnet_b4', '--format', 'json'])
    rows = json.loads(capsys.readouterr().out)
    assert [r['arch'] for r in rows] == ['b0', 'b4'] and rows[1]['params_full'] == 19341616
    describe.main(['b7'])
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith('| arch | params_backbone | params_full | gmacs')
    assert table[2].startswith('| b7 | 62,143,440 | 66,347,960 | 37.75 | 55 | 48 | 0.873 | 32/48/80/224/640')


def test_describe_cli_rejects_unknown_arch():
    result = subprocess.run([sys.executable, str(ROOT / 'tools' / 'describe.py'), 'b8'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown EfficientNet arch 'b8'" in result.stderr


def test_markdown_table_formats_lists_and_big_ints():
    assert markdown_table([{'a': 12345, 'b': [1, 2]}]).splitlines() == ['| a | b |', '|---|---|', '| 12,345 | 1/2 |']
    # a row missing a column (a failed run's) leaves the cell empty instead of raising
    assert markdown_table([{'a': 1}, {'a': 2, 'b': 3}]).splitlines()[2:] == ['| 1 |  |', '| 2 | 3 |']
