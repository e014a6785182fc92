"""End to end: `taskpgm run` on a minimal config, killed mid-way and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

MINIMAL = """
run: {{dir: {run}, seed: 0}}
pool: {{source: synthetic, families: [reverse, code], scale: 0.1}}
model:
  tiny: {{n_layer: 1, n_embd: 32, n_head: 2, vocab_size: 128}}
experts: {{steps: 4, batch_size: 4}}
sample: {{budget: 40}}
train: {{steps: 4, batch_size: 4}}
evaluate: {{max_examples: 4}}
report: {{path_points: 5, influence: true}}
strategies:
- {{name: uniform, method: uniform}}
- {{name: taskpgm, method: taskpgm}}
"""


def _cmd(config: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; from taskpgm.cli import main; main()",
            "run", str(config), "--quiet"]


def _stages(run: Path) -> dict:
    return json.loads((run / "stages.json").read_text())["stages"]


@pytest.mark.slow
def test_run_killed_mid_way_resumes_without_redoing_finished_stages(tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text(MINIMAL.format(run=run))
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    # 1. Start, and SIGKILL as soon as the experts stage is under way.
    proc = subprocess.Popen(_cmd(config), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and proc.poll() is None:
        st = _stages(run) if (run / "stages.json").is_file() else {}
        if st.get("experts", {}).get("status") == "running" and \
                any((run / "experts").glob("*/config.json")):
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait()
    assert killed, "the run finished before it could be killed; slow the config down"
    st = _stages(run)
    assert st["pool"]["status"] == "done" and st["experts"]["status"] == "running"
    finished_before = {n for n, s in st.items() if s["status"] == "done"}
    stamp = {n: (run / "pool" / "pool.json").stat().st_mtime_ns for n in ["pool"]}
    # Finished experts only: a SIGKILL can leave an expert's temporary folder
    # (.<task>.taskpgm-*.tmp) behind, which the re-run clears away.
    experts_before = {p.parent.name: p.stat().st_mtime_ns
                      for p in (run / "experts").glob("*/taskpgm_train.json")
                      if not p.parent.name.startswith(".")}

    # 2. Re-run: finishes; finished stages are skipped, finished experts kept.
    out = subprocess.run(_cmd(config), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in finished_before:
        assert f"{name}: up to date, skipped" in out.stdout
    assert (run / "pool" / "pool.json").stat().st_mtime_ns == stamp["pool"]
    for task, mtime in experts_before.items():
        assert (run / "experts" / task / "taskpgm_train.json").stat().st_mtime_ns == mtime
    assert all(s["status"] == "done" for s in _stages(run).values())
    assert (run / "report.html").is_file() and (run / "config.yaml").is_file()
    mixture = (run / "mixture.json").read_bytes()

    # 3. A fresh uninterrupted run gives the identical mixture.
    run2 = tmp_path / "run2"
    config2 = tmp_path / "c2.yaml"
    config2.write_text(MINIMAL.format(run=run2))
    out2 = subprocess.run(_cmd(config2), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out2.returncode == 0, out2.stdout + out2.stderr
    assert (run2 / "mixture.json").read_bytes() == mixture

    # 4. A third run does nothing; changing train.steps re-runs only training onwards.
    out3 = subprocess.run(_cmd(config) + ["--set", "train.steps=3"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert out3.returncode == 0, out3.stdout + out3.stderr
    for name in ("pool", "base", "experts", "scores", "affinity", "mixture",
                 "data:uniform", "eval:base"):
        assert f"{name}: up to date, skipped" in out3.stdout
    assert "> train:uniform" in out3.stdout and "> report" in out3.stdout
