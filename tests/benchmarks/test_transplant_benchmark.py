"""benchmarks.transplant / tools/benchmark_transplant.py: the command line fills the settings, and
the table reads the curves at fixed fractions of the budget (the runs themselves take minutes)."""
from dataclasses import asdict

from benchmarks.transplant import TransplantBenchSettings, table
from tool_loader import tool


def test_command_line_defaults_are_the_settings_defaults():
    args = tool('benchmark_transplant').parse_args([])
    assert TransplantBenchSettings(**vars(args)) == TransplantBenchSettings()
    changed = tool('benchmark_transplant').parse_args(['--arch', 'b4', '--lr', '2e-4'])
    assert asdict(TransplantBenchSettings(**vars(changed)))['arch'] == 'b4'


def test_table_marks_start_quarter_half_and_end():
    curves = {'grown': [[0, 0.5], [25, 0.6], [50, 0.7], [75, 0.72], [100, 0.8]],
              'random': [[0, 0.1], [25, 0.2], [50, 0.3], [75, 0.35], [100, 0.4]]}
    rows = table(curves, {'grown': 0.2, 'random': 0.5}).splitlines()
    assert rows[0] == ('| init | mDice it 0 | mDice it 25 | mDice it 50 | mDice it 100 | '
                       'best mDice | train loss, last 20 it |')
    assert rows[2] == '| grown | 0.500 | 0.600 | 0.700 | 0.800 | 0.800 | 0.200 |'
