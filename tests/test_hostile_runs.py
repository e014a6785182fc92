"""Hostile cases against the run directory: foreign files, edited or deleted artifacts,
two runs at once. The runner must never delete what it did not write, never trust an
artifact that changed, and never let two runs share a directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from taskpgm.errors import InputError
from taskpgm.pipeline.framework import Runner, Stage
from taskpgm.pipeline.lock import LOCK_FILE, run_lock


def _writer(log: list[str], root, name: str, files: dict[str, str]):
    def run() -> None:
        log.append(name)
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    return run


def _stages(log, root, payload=0):
    return [
        Stage("experts", _writer(log, root, "experts", {"experts/a/w.bin": "A", "experts/b/w.bin": "B",
                                                        "experts/index.json": "{}"}),
              payload, outputs=("experts",), resumable=True),
        Stage("summary", _writer(log, root, "summary", {"summary.json": "S"}), deps=("experts",),
              outputs=("summary.json",)),
    ]


def test_foreign_file_in_an_output_dir_is_refused_not_deleted(tmp_path):
    (tmp_path / "experts").mkdir()
    notes = tmp_path / "experts" / "my-notes.txt"
    notes.write_text("hand-trained, lr 1e-4")
    log: list[str] = []
    with pytest.raises(InputError, match="my-notes.txt.*not written by it"):
        Runner(tmp_path, _stages(log, tmp_path)).run()
    assert notes.read_text() == "hand-trained, lr 1e-4" and log == []


def test_foreign_file_added_after_a_run_survives_a_rerun_from_scratch(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _stages(log, tmp_path, payload=1)).run()
    notes = tmp_path / "experts" / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(InputError, match="notes.txt"):
        Runner(tmp_path, _stages(log, tmp_path, payload=2)).run()  # changed config: redo
    assert notes.read_text() == "mine"
    # A run that does not need to rewrite experts/ leaves the user's file alone.
    log.clear()
    Runner(tmp_path, _stages(log, tmp_path, payload=1)).run()
    assert log == [] and notes.read_text() == "mine"


def test_record_deleted_but_outputs_present_is_refused(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _stages(log, tmp_path)).run()
    (tmp_path / "stages.json").unlink()
    with pytest.raises(InputError, match="not written by it"):
        Runner(tmp_path, _stages(log, tmp_path)).run()


def test_changed_artifact_of_a_plain_stage_is_redone(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _stages(log, tmp_path)).run()
    (tmp_path / "summary.json").write_text("edited by hand")
    log.clear()
    items = Runner(tmp_path, _stages(log, tmp_path)).plan()
    assert [(i.stage.name, i.action) for i in items] == [("experts", "skip"), ("summary", "run")]
    assert "changed since it was written" in items[1].reason
    Runner(tmp_path, _stages(log, tmp_path)).run()
    assert log == ["summary"] and (tmp_path / "summary.json").read_text() == "S"


def test_same_size_edit_is_caught_by_its_digest(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _stages(log, tmp_path)).run()
    f = tmp_path / "experts" / "a" / "w.bin"
    f.write_text("Z")  # same size, new content, new mtime: re-hashed, caught
    items = Runner(tmp_path, _stages(log, tmp_path)).plan()
    assert items[0].action == "resume" and items[0].repair == ("experts/a",)


def test_damaged_part_of_a_resumable_stage_is_removed_and_redone(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _stages(log, tmp_path)).run()
    (tmp_path / "experts" / "b" / "w.bin").unlink()
    (tmp_path / "experts" / "a" / "w.bin").write_text("zeroed weights")
    seen: list[bool] = []

    def resume() -> None:
        # The damaged experts are gone before the stage resumes, the others kept.
        seen.extend([(tmp_path / "experts/a").exists(), (tmp_path / "experts/b").exists(),
                     (tmp_path / "experts/index.json").exists()])
        _writer(log, tmp_path, "experts", {"experts/a/w.bin": "A", "experts/b/w.bin": "B"})()

    stages = _stages(log, tmp_path)
    stages[0] = Stage("experts", resume, 0, outputs=("experts",), resumable=True)
    log.clear()
    Runner(tmp_path, stages).run()
    assert seen == [False, False, True]
    assert log == ["experts", "summary"]  # downstream of a redone stage is redone
    assert Runner(tmp_path, _stages(log, tmp_path)).plan()[0].action == "skip"


def test_lock_refuses_a_second_holder_and_names_its_pid(tmp_path):
    with run_lock(tmp_path):
        code = textwrap.dedent(f"""
            from pathlib import Path
            from taskpgm.errors import InputError
            from taskpgm.pipeline.lock import run_lock
            try:
                with run_lock(Path({str(tmp_path)!r})):
                    print("acquired")
            except InputError as e:
                print(e)
        """)
        out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True).stdout
        assert f"in use by another taskpgm run (pid {os.getpid()})" in out
    # Released when the holder is done (or dies): the next one gets it.
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True).stdout
    assert "acquired" in out
    assert (tmp_path / LOCK_FILE).exists()


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    code = f"""
import time
from pathlib import Path
from taskpgm.pipeline.lock import run_lock
with run_lock(Path({str(tmp_path)!r})):
    print("held", flush=True)
    time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"pid {proc.pid}"), run_lock(tmp_path):
            pass
    finally:
        proc.kill()
        proc.wait()
    deadline = time.time() + 10
    while True:  # the kernel drops the lock with the process
        try:
            with run_lock(tmp_path):
                break
        except InputError:
            assert time.time() < deadline
            time.sleep(0.05)


# -- the real pipeline on a minimal config ----------------------------------------------

MINIMAL = """
run: {{dir: {run}, seed: 0}}
pool: {pool}
model:
  tiny: {{n_layer: 1, n_embd: 32, n_head: 2, vocab_size: 128}}
experts: {{steps: 3, batch_size: 4}}
sample: {{budget: 40}}
train: {{steps: 3, batch_size: 4}}
evaluate: {{max_examples: 4}}
report: {{enabled: false}}
strategies:
- {{name: uniform, method: uniform}}
- {{name: taskpgm, method: taskpgm}}
"""
SYNTH = "{source: synthetic, families: [reverse, code], scale: 0.1}"


def _config(tmp_path, run, pool=SYNTH, name="c.yaml"):
    path = tmp_path / name
    path.write_text(MINIMAL.format(run=run, pool=pool))
    return path


def _artifacts(run) -> dict[str, bytes]:
    """Every file of a run but its records (stages.json holds timings, the lock a PID,
    config.yaml names run.dir itself)."""
    skip = {"stages.json", LOCK_FILE, "config.yaml"}
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name not in skip}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    pytest.importorskip("torch")
    from taskpgm.cli import run as cli_run

    tmp = tmp_path_factory.mktemp("hostile")
    run = tmp / "run"
    assert cli_run(["run", str(_config(tmp, run)), "--quiet"]) == 0
    return tmp, run


def _copy_run(finished_run, tmp_path):
    import shutil

    _, run = finished_run
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    # Copies get new mtimes, so every file is re-hashed once: that is the slow path.
    cfg = _config(tmp_path, dst)
    return dst, cfg


@pytest.mark.slow
def test_same_config_in_two_directories_gives_identical_artifacts(finished_run, tmp_path):
    from taskpgm.cli import run as cli_run

    _, run = finished_run
    other = tmp_path / "elsewhere" / "run2"
    assert cli_run(["run", str(_config(tmp_path, other)), "--quiet"]) == 0
    a, b = _artifacts(run), _artifacts(other)
    assert sorted(a) == sorted(b)
    differ = [k for k in a if a[k] != b[k]]
    assert differ == [], f"artifacts differ between directories: {differ}"
    for k, blob in b.items():
        assert str(other).encode() not in blob, f"{k} embeds the run directory"


@pytest.mark.slow
def test_deleted_shard_and_zeroed_expert_are_remade_identically(finished_run, tmp_path, capsys):
    from taskpgm.cli import run as cli_run

    run, cfg = _copy_run(finished_run, tmp_path)
    before = _artifacts(run)
    shard = min((run / "scores").rglob("*.parquet"))
    shard.unlink()
    weights = min((run / "experts").glob("*/model.safetensors"))
    weights.write_bytes(b"\0" * weights.stat().st_size)
    capsys.readouterr()
    assert cli_run(["run", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "> experts" in out and "changed since it was written" in out
    assert "pool: up to date" in out and "base: up to date" in out
    assert _artifacts(run) == before  # same seed, same bytes


@pytest.mark.slow
def test_second_run_on_a_busy_directory_is_refused(finished_run, tmp_path):
    run, cfg = _copy_run(finished_run, tmp_path)
    with run_lock(run):
        out = subprocess.run([sys.executable, "-c", "from taskpgm.cli import main; main()", "run", str(cfg),
                              "--quiet"],
                             check=False, capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (f"error: {run}: in use by another taskpgm run "
                                  f"(pid {os.getpid()}); wait for it to finish or choose "
                                  "another run.dir")


@pytest.mark.slow
def test_user_files_where_a_run_writes_are_refused_and_kept(tmp_path, capsys):
    pytest.importorskip("torch")
    from taskpgm.cli import run as cli_run

    run = tmp_path / "run"
    (run / "experts").mkdir(parents=True)
    mine = run / "experts" / "hand-trained.txt"
    mine.write_text("mine")
    assert cli_run(["run", str(_config(tmp_path, run)), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "hand-trained.txt: in a place this run must write, but not written by it" in err
    assert mine.read_text() == "mine" and not (run / "pool").exists()
    # A config.yaml of the user's in a fresh run.dir is not overwritten either.
    run2 = tmp_path / "run2"
    run2.mkdir()
    (run2 / "config.yaml").write_text("# my notes\n")
    assert cli_run(["run", str(_config(tmp_path, run2)), "--quiet"]) == 2
    assert "config.yaml: exists and was not written by a taskpgm run" in capsys.readouterr().err
    assert (run2 / "config.yaml").read_text() == "# my notes\n"


@pytest.mark.slow
def test_edited_task_file_of_a_dir_pool_reruns_from_the_experts(finished_run, tmp_path):
    import shutil

    from taskpgm.config import load_config
    from taskpgm.pipeline import make_runner

    _src, run = finished_run
    pool = tmp_path / "mypool"
    shutil.copytree(run / "pool", pool)
    cfg_path = _config(tmp_path, tmp_path / "run", pool=f"{{source: dir, path: {pool}}}")
    plan = {i.stage.name: i.action for i in make_runner(load_config(cfg_path))[1].plan()}
    assert plan["pool"] == "run"
    from taskpgm.pipeline import run_pipeline

    run_pipeline(load_config(cfg_path), progress=False)
    assert all(a == "skip" for a in
               (i.action for i in make_runner(load_config(cfg_path))[1].plan()))
    data = min(pool.rglob("train.jsonl"))
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[: len(lines) // 2]))  # cut at a line boundary
    plan = {i.stage.name: (i.action, i.reason)
            for i in make_runner(load_config(cfg_path))[1].plan()}
    assert plan["pool"] == ("run", "config or inputs changed")
    assert plan["experts"][0] == "run"


@pytest.mark.slow
def test_plan_refuses_unknown_names_and_empty_splits_before_any_work(finished_run, tmp_path,
                                                                      capsys):
    import json
    import shutil

    from taskpgm.cli import run as cli_run

    _, run = finished_run
    pool = tmp_path / "mypool"
    shutil.copytree(run / "pool", pool)
    cfg = _config(tmp_path, tmp_path / "r", pool=f"{{source: dir, path: {pool}}}")
    assert cli_run(["run", str(cfg), "--plan", "--set", "evaluate.tasks=[nope]"]) == 2
    assert "evaluate.tasks: task 'nope' is not in pool" in capsys.readouterr().err
    # A training task whose probe split is empty: scoring would fail after the experts.
    manifest = json.loads((pool / "pool.json").read_text())
    manifest["tasks"][0]["counts"]["probe"] = 0
    (pool / "pool.json").write_text(json.dumps(manifest))
    (pool / "tasks" / manifest["tasks"][0]["name"] / "probe.jsonl").write_text("")
    assert cli_run(["run", str(cfg), "--plan"]) == 2
    assert "has no probe examples" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # --plan writes nothing


@pytest.mark.slow
def test_built_pool_is_checked_before_the_base_model(tmp_path, capsys):
    import json

    from taskpgm.cli import run as cli_run

    run = tmp_path / "run"
    cfg = _config(tmp_path, run)
    assert cli_run(["run", str(cfg), "--quiet", "--set", "evaluate.tasks=[nope]"]) == 2
    assert "evaluate.tasks: task 'nope' is not in pool" in capsys.readouterr().err
    stages = json.loads((run / "stages.json").read_text())["stages"]
    assert stages["pool"]["status"] == "running" and "base" not in stages


def test_task_file_cut_at_a_line_boundary_is_refused_not_used(tmp_path):
    from taskpgm.tasks.pool import Pool
    from taskpgm.tasks.synth import build_synthetic_pool

    build_synthetic_pool(tmp_path / "pool", seed=0, families=("reverse",), scale=0.1)
    pool = Pool.load(tmp_path / "pool")
    name = pool.train_tasks()[0].name
    path = pool.split_path(name, "train")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]))
    with pytest.raises(InputError, match=rf"train.jsonl: {len(lines) // 2} examples, but .*"
                                         rf"lists {len(lines)} .*truncated"):
        Pool.load(tmp_path / "pool").examples(name, "train")
    path.unlink()
    with pytest.raises(InputError, match="train.jsonl: missing, but"):
        Pool.load(tmp_path / "pool").examples(name, "train")


def test_a_model_write_failing_for_lack_of_space_is_one_line(monkeypatch, capsys):
    import taskpgm.cli.pipeline as cli_pipeline
    from taskpgm.cli import run as cli_run

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(cli_pipeline, "_execute", full)
    assert cli_run(["demo", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "file write failed (is the disk full?)" in err

    def bug(*a, **k):
        raise RuntimeError("shape mismatch")  # an internal bug still shows its traceback

    monkeypatch.setattr(cli_pipeline, "_execute", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        cli_run(["demo", "--quiet"])


def test_hand_edited_record_naming_a_file_outside_the_outputs_is_refused(tmp_path):
    import json

    victim = tmp_path / "precious.txt"
    victim.write_text("keep")
    run = tmp_path / "run"
    log: list[str] = []
    Runner(run, _stages(log, run)).run()
    rec = json.loads((run / "stages.json").read_text())
    rec["stages"]["summary"]["files"]["../precious.txt"] = [4, 0, "0" * 64]
    (run / "stages.json").write_text(json.dumps(rec))
    with pytest.raises(InputError, match="records '../precious.txt', which is not one of its"):
        Runner(run, _stages(log, run, payload=2)).run()
    assert victim.read_text() == "keep"
    rec["stages"]["summary"]["files"] = {"summary.json": ["big", 0, "x"]}
    (run / "stages.json").write_text(json.dumps(rec))
    with pytest.raises(InputError, match="edited by hand"):
        Runner(run, _stages(log, run))


def test_plan_refuses_a_hub_id_or_a_model_without_tokenizer(tmp_path, capsys):
    from taskpgm.cli import run as cli_run

    cfg = _config(tmp_path, tmp_path / "run")
    assert cli_run(["run", str(cfg), "--plan", "--set", "model.base=meta-llama/Llama-2-7b-hf"]) == 2
    err = capsys.readouterr().err
    assert "model.base: meta-llama/Llama-2-7b-hf: not a local directory; taskpgm downloads " \
           "nothing" in err and err.count("\n") == 1
    weights_only = tmp_path / "ckpt"
    weights_only.mkdir()
    (weights_only / "config.json").write_text("{}")
    assert cli_run(["run", str(cfg), "--plan", "--set", f"model.base={weights_only}"]) == 2
    assert "no tokenizer here" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# -- found by a hostile review of the guarantees above ----------------------------------

def _scores_stages(log, root):
    files = {f"scores/shards/{e}/{t}.parquet": e + t for e in "ab" for t in "xy"}
    return [Stage("scores", _writer(log, root, "scores", {**files, "scores/scores.json": "{}"}),
                  0, outputs=("scores",), resumable=True, repair_depth=3)]


def test_a_repair_never_removes_a_users_file_inside_the_damaged_unit(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _stages(log, tmp_path)).run()
    (tmp_path / "experts" / "a" / "w.bin").unlink()
    note = tmp_path / "experts" / "a" / "NOTE.txt"
    note.write_text("mine")
    with pytest.raises(InputError, match="NOTE.txt: in a place this run must write"):
        Runner(tmp_path, _stages(log, tmp_path)).run()
    assert note.read_text() == "mine"


def test_a_users_file_added_before_a_resume_is_not_recorded_as_the_runs(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _stages(log, tmp_path)).run()
    (tmp_path / "experts" / "index.json").unlink()
    (tmp_path / "experts" / "mine").mkdir()
    note = tmp_path / "experts" / "mine" / "NOTE.txt"
    note.write_text("mine")
    Runner(tmp_path, _stages(log, tmp_path)).run()  # repairs index.json, keeps NOTE.txt
    rec = json.loads((tmp_path / "stages.json").read_text())
    assert "experts/mine/NOTE.txt" not in rec["stages"]["experts"]["files"]
    with pytest.raises(InputError, match="NOTE.txt"):  # a later re-run must not delete it
        Runner(tmp_path, _stages(log, tmp_path, payload=2)).run()
    assert note.read_text() == "mine"


def test_a_record_without_file_lists_owns_nothing(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _stages(log, tmp_path)).run()
    rec = json.loads((tmp_path / "stages.json").read_text())
    for st in rec["stages"].values():
        st["files"] = None
    (tmp_path / "stages.json").write_text(json.dumps(rec))
    note = tmp_path / "experts" / "a" / "NOTE.txt"
    note.write_text("mine")
    with pytest.raises(InputError, match="not written by it"):
        Runner(tmp_path, _stages(log, tmp_path, payload=2)).run()
    assert note.read_text() == "mine"


def test_one_damaged_shard_redoes_that_shard_only(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _scores_stages(log, tmp_path)).run()
    (tmp_path / "scores/shards/b/x.parquet").unlink()
    item = Runner(tmp_path, _scores_stages(log, tmp_path)).plan()[0]
    assert item.action == "resume" and item.repair == ("scores/shards/b/x.parquet",)


def test_leftover_temporaries_of_a_killed_writer_are_removed_not_recorded(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _stages(log, tmp_path)).run()
    (tmp_path / "summary.json").write_text("changed")  # forces the summary stage to redo
    tmp_dir = tmp_path / "experts" / ".a.taskpgm-k3j_x9q2.tmp"
    tmp_dir.mkdir()
    (tmp_dir / "half.bin").write_text("x")
    (tmp_path / "experts" / "b" / "w.bin").unlink()
    Runner(tmp_path, _stages(log, tmp_path)).run()
    assert not tmp_dir.exists()
    rec = json.loads((tmp_path / "stages.json").read_text())
    assert not any(".tmp" in f for f in rec["stages"]["experts"]["files"])


def test_the_lock_holds_even_if_its_file_is_deleted_and_never_follows_a_symlink(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep")
    (run / LOCK_FILE).symlink_to(victim)
    code = f"""
from pathlib import Path
from taskpgm.errors import InputError
from taskpgm.pipeline.lock import run_lock
try:
    with run_lock(Path({str(run)!r})):
        print("acquired")
except InputError as e:
    print(e)
"""
    with run_lock(run):
        assert victim.read_text() == "keep" and not (run / LOCK_FILE).is_symlink()
        (run / LOCK_FILE).unlink()  # a user tidying up mid-run
        out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                             text=True).stdout
        assert "in use by another taskpgm run" in out


def test_strategy_named_base_is_refused_at_load(tmp_path, capsys):
    from taskpgm.cli import run as cli_run

    cfg = _config(tmp_path, tmp_path / "run")
    assert cli_run(["run", str(cfg), "--plan", "--set",
                    "strategies=[{name: base, method: uniform}]"]) == 2
    assert "strategy name 'base' is reserved" in capsys.readouterr().err


@pytest.mark.slow
def test_plan_solves_every_mixture_on_a_stand_in_before_any_work(finished_run, tmp_path,
                                                                 capsys):
    import shutil

    from taskpgm.cli import run as cli_run

    _, run = finished_run
    pool = tmp_path / "mypool"
    shutil.copytree(run / "pool", pool)
    cfg = _config(tmp_path, tmp_path / "r", pool=f"{{source: dir, path: {pool}}}")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"nope": 1}')
    for override, message in (
            ("mixture.budget_k=100", "mixture: "),
            ("mixture.max_epochs=0.001", "mixture: "),
            (f"strategies=[{{name: g, method: given, params: {{weights: {garbage}}}}}]",
             "strategies[0] (g): "),
            (f"strategies=[{{name: g, method: given, params: {{weights: {unknown}}}}}]",
             "strategies[0] (g): ")):
        assert cli_run(["run", str(cfg), "--plan", "--set", override]) == 2, override
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and err.count("\n") == 1, (override, err)
    # A task file emptied by hand while pool.json still lists its examples.
    probe = min(pool.rglob("probe.jsonl"))
    probe.write_text("")
    assert cli_run(["run", str(cfg), "--plan"]) == 2
    assert "probe.jsonl: 0 examples, but" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_dir_pool_runs_in_two_directories_give_identical_artifacts(finished_run, tmp_path):
    import shutil

    from taskpgm.cli import run as cli_run

    _, run = finished_run
    pool = tmp_path / "shared-pool"
    shutil.copytree(run / "pool", pool)
    spec = f"{{source: dir, path: {pool}}}"
    a, b = tmp_path / "a", tmp_path / "deep" / "er" / "b"
    for d, name in ((a, "a.yaml"), (b, "b.yaml")):
        assert cli_run(["run", str(_config(tmp_path, d, pool=spec, name=name)), "--quiet"]) == 0
    assert _artifacts(a) == _artifacts(b)


# -- second hostile round ----------------------------------------------------------------

def test_a_stage_that_stopped_on_an_error_owns_only_what_it_had_written(tmp_path):
    def fails() -> None:
        (tmp_path / "experts" / "a").mkdir(parents=True)
        (tmp_path / "experts" / "a" / "w.bin").write_text("half")
        raise InputError("refused after writing")

    with pytest.raises(InputError):
        Runner(tmp_path, [Stage("experts", fails, 0, outputs=("experts",))]).run()
    note = tmp_path / "experts" / "NOTE.txt"
    note.write_text("mine")  # added after the failure: newer than the stage's start
    log: list[str] = []
    restart = [Stage("experts", _writer(log, tmp_path, "experts", {"experts/a/w.bin": "A"}), 0,
                     outputs=("experts",))]  # not resumable: restarts from scratch
    with pytest.raises(InputError, match="NOTE.txt"):
        Runner(tmp_path, restart).run()
    assert note.read_text() == "mine" and log == []
    note.unlink()
    Runner(tmp_path, restart).run()  # its own partial output alone: removed and redone
    assert log == ["experts"]


def test_a_killed_stage_owns_only_files_newer_than_its_start(tmp_path):
    (tmp_path / "experts").mkdir()
    note = tmp_path / "experts" / "NOTE.txt"
    note.write_text("mine")
    os.utime(note, ns=(1, 1))  # older than any run
    (tmp_path / "experts" / "partial.bin").write_text("half")  # written by the killed stage
    stages = _stages([], tmp_path)[:1]
    fp = Runner(tmp_path, stages).fingerprints["experts"]
    (tmp_path / "stages.json").write_text(json.dumps({"stages": {"experts": {
        "fingerprint": "other", "status": "running", "started_ns": 1000}}}))
    assert fp != "other"
    with pytest.raises(InputError, match="NOTE.txt"):
        Runner(tmp_path, stages).run()
    assert note.read_text() == "mine"
    note.unlink()
    Runner(tmp_path, stages).run()  # only the stage's own partial output: restarted
    assert not (tmp_path / "experts" / "partial.bin").exists()


def test_a_symlinked_directory_inside_an_output_is_never_written_through(tmp_path):
    log: list[str] = []
    Runner(tmp_path / "run", _scores_stages(log, tmp_path / "run")).run()
    run = tmp_path / "run"
    outside = tmp_path / "outside"
    shutil.copytree(run / "scores/shards/b", outside)
    (outside / "x.parquet").write_text("user bytes")
    shutil.rmtree(run / "scores/shards/b")
    (run / "scores/shards/b").symlink_to(outside)
    with pytest.raises(InputError, match="scores/shards/b: in a place"):
        Runner(run, _scores_stages(log, run)).run()
    assert (outside / "x.parquet").read_text() == "user bytes"


def test_user_dot_files_that_look_like_temporaries_are_kept(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _stages(log, tmp_path)).run()
    mine = tmp_path / "experts" / "a" / ".backup.20241125.old"
    mine.write_text("mine")
    killed = tmp_path / ".experts.taskpgm-ab12cd_3.tmp"  # a killed writer's, beside it
    killed.mkdir()
    (tmp_path / "experts" / "b" / "w.bin").unlink()
    Runner(tmp_path, _stages(log, tmp_path)).run()
    assert mine.read_text() == "mine" and not killed.exists()


@pytest.mark.slow
def test_report_refuses_an_unfinished_run_and_reads_inputs_by_absolute_path(finished_run,
                                                                          tmp_path, capsys):
    from taskpgm.cli import run as cli_run

    run, cfg = _copy_run(finished_run, tmp_path)
    assert cli_run(["run", str(cfg), "--quiet"]) == 0
    recorded = (run / "config.yaml").read_text()
    assert "dir:" in recorded
    # An interrupted re-run with another train.steps: the report must not mix them.
    rec = json.loads((run / "stages.json").read_text())
    rec["stages"]["train:uniform"]["status"] = "running"
    (run / "stages.json").write_text(json.dumps(rec))
    capsys.readouterr()
    assert cli_run(["report", str(run)]) == 2
    assert "not finished (stage train:uniform" in capsys.readouterr().err
    with run_lock(run):
        assert cli_run(["report", str(run)]) == 2
    assert "in use by another taskpgm run" in capsys.readouterr().err


def test_recorded_config_holds_absolute_input_paths(tmp_path, monkeypatch):
    from taskpgm.config import config_from_dict
    from taskpgm.pipeline import recorded_config_text

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.json").write_text('{"a": 1}')
    cfg = config_from_dict({"pool": {"source": "dir", "path": "../pool"},
                            "strategies": [{"name": "g", "method": "given",
                                            "params": {"weights": "w.json"}}]}, "c.yaml")
    text = recorded_config_text(cfg)
    assert f"path: {tmp_path}/../pool" in text  # absolute, as the run resolved it
    assert f"weights: {tmp_path / 'w.json'}" in text
