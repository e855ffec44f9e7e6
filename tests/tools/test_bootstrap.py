"""tools/_bootstrap.py: OpenMP waits with a short spin unless the user chose a policy."""
import json
import os
import subprocess
import sys

import pytest

from tool_loader import ROOT

READ_BACK = ('import sys; sys.path.insert(0, "tools"); import _bootstrap, json, os; '
             'print(json.dumps({k: os.environ.get(k) for k in '
             '("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}))')


def _environment_after_bootstrap(**settings):
    env = {key: value for key, value in os.environ.items()
           if key not in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')}
    env.update(settings)
    out = subprocess.run([sys.executable, '-c', READ_BACK], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize('settings, expected', [
    ({}, {'OMP_WAIT_POLICY': None, 'GOMP_SPINCOUNT': '10000'}),
    ({'OMP_WAIT_POLICY': 'PASSIVE'}, {'OMP_WAIT_POLICY': 'PASSIVE', 'GOMP_SPINCOUNT': None}),
    ({'GOMP_SPINCOUNT': '300000'}, {'OMP_WAIT_POLICY': None, 'GOMP_SPINCOUNT': '300000'}),
])
def test_openmp_waiting_is_a_short_spin_unless_the_user_chose(settings, expected):
    assert _environment_after_bootstrap(**settings) == expected
