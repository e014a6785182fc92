"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session", autouse=True)
def _digests_kept_in_the_session(tmp_path_factory):
    """Base-model digests persist per machine (taskpgm.pipeline.identity); the tests keep
    theirs in a temporary file (subprocesses inherit the variable), not in ~/.cache."""
    import os

    old = os.environ.get("TASKPGM_DIGESTS")
    os.environ["TASKPGM_DIGESTS"] = str(tmp_path_factory.mktemp("digests") / "digests.json")
    yield
    if old is None:
        os.environ.pop("TASKPGM_DIGESTS", None)
    else:
        os.environ["TASKPGM_DIGESTS"] = old
PMI_316 = SHARED / "data" / "pmi_316_tasks.npy"


@pytest.fixture
def pmi316_path() -> Path:
    if not PMI_316.is_file():
        pytest.skip(f"{PMI_316} not present (../shared is beside the checkout in CI)")
    return PMI_316


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit_code, stdout, stderr)."""
    from taskpgm.cli import run

    def _run(*args: str) -> tuple[int, str, str]:
        code = run([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


def tiny_run_config(tmp_path, strategies, *, experts_steps=3, budget=200, train_steps=5,
                    max_examples=20):
    """A run of the synthetic suite on a one-layer tiny model: seconds on a CPU."""
    from taskpgm.config import config_from_dict

    return config_from_dict({
        "run": {"dir": str(tmp_path / "run")},
        "model": {"tiny": {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 128}},
        "experts": {"steps": experts_steps, "batch_size": 8}, "sample": {"budget": budget},
        "train": {"steps": train_steps, "batch_size": 8},
        "evaluate": {"max_examples": max_examples}, "report": {"enabled": False},
        "strategies": strategies,
    })
