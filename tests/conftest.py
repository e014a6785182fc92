"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
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
