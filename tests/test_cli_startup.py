"""Start-up cost: loading the config or the command line imports no heavy library.

``taskpgm --help`` and ``import taskpgm.config`` once pulled in scipy and pyarrow (through
the choice registries) at about four times the start-up time. The choice lists live in
:mod:`taskpgm.choices` and the ``taskpgm.affinity`` / ``taskpgm.mixture`` packages load
their names on first use; these tests hold that, in a fresh interpreter each.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("scipy", "pyarrow", "torch")


def _loaded_after(code: str) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which of HEAVY it left in sys.modules."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_importing_the_config_and_the_cli_loads_no_heavy_library():
    loaded = _loaded_after("import taskpgm.config, taskpgm.cli")
    assert not any(loaded.values()), loaded


def test_taskpgm_help_loads_no_heavy_library():
    code = ("import contextlib, io\nfrom taskpgm.cli import run\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    assert run(['--help']) == 0\n"
            "assert 'solve' in out.getvalue()")
    loaded = _loaded_after(code)
    assert not any(loaded.values()), loaded


def test_loading_a_config_with_strategy_params_loads_no_heavy_library():
    code = ("from taskpgm.config import Config, config_from_dict\n"
            "cfg = config_from_dict({'mixture': {'kernel': 'calibrated'}, 'strategies': "
            "[{'name': 't', 'method': 'temperature', 'params': {'temperature': '2'}}, "
            "{'name': 'p', 'method': 'taskpgm', 'params': {'kernel': 'exp', 'sigma': 1.5}}]})\n"
            "assert cfg.strategies[0].params['temperature'] == 2.0")
    loaded = _loaded_after(code)
    assert not any(loaded.values()), loaded


@pytest.mark.parametrize("module", ["taskpgm", "taskpgm.mixture", "taskpgm.affinity",
                                    "taskpgm.mixture.record", "taskpgm.choices"])
def test_light_modules_stay_light(module):
    loaded = _loaded_after(f"import {module}")
    assert not any(loaded.values()), (module, loaded)


def test_the_public_api_still_loads_on_first_use():
    code = ("import taskpgm, taskpgm.mixture as mx, taskpgm.affinity as af\n"
            "from taskpgm.mixture import solve, STRATEGIES, KERNELS, Mixture\n"
            "from taskpgm.affinity import compute_affinity, METRICS, AffinityMatrix\n"
            "assert taskpgm.solve is solve is mx.solve\n"
            "assert 'solve' in dir(mx) and 'compute_affinity' in dir(af)\n"
            "m = taskpgm.solve(None, names=['a', 'b'], method='uniform')\n"
            "assert list(m.weights) == [0.5, 0.5]\n"
            "try:\n"
            "    from taskpgm.mixture import no_such_name\n"
            "except ImportError:\n"
            "    pass\n"
            "else:\n"
            "    raise AssertionError('no_such_name imported')")
    loaded = _loaded_after(code)
    assert loaded["scipy"]  # the solver itself does need scipy
