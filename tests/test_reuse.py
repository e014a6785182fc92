"""Content-addressed experts and score shards: a changed pool redoes only what changed.

Every run here uses a ``dir`` pool of tiny hand-made tasks and one prebuilt base model
(a tiny base built by the run would be rebuilt from the changed pool's text, which
changes every expert). Training and scoring calls are counted, not timed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from taskpgm.config import config_from_dict
from taskpgm.errors import ConfigError

torch = pytest.importorskip("torch")

WORDS = ["red", "blue", "green", "gold", "black", "white", "pink", "grey"]
RULES = {"rev": lambda w: w[::-1], "sort": sorted, "first": lambda w: w[:1],
         "last": lambda w: w[-1:], "mid": lambda w: w[1:2], "dup": lambda w: w + w}


def _task(name: str, rule: str, seed: int, role: str = "train", ids: str | None = None,
          probe_seed: int | None = None):
    from taskpgm.tasks.pool import Example, TaskInfo
    from taskpgm.tasks.writer import TaskData

    def split(kind: str, n: int, s: int) -> list:
        rng = random.Random(s)
        out = []
        for i in range(n):
            words = rng.sample(WORDS, 3)
            out.append(Example(f"{ids or name}-{kind}-{i:03d}", f"{rule}: {' '.join(words)}\n",
                               " ".join(RULES[rule](words))))
        return out

    splits = {"probe": split("p", 4, (probe_seed if probe_seed is not None else seed) + 1),
              "eval": split("e", 3, seed + 2)}
    if role == "train":
        splits["train"] = split("t", 8, seed)
    return TaskData(TaskInfo(name=name, role=role, family=rule), splits)


TASKS = {"a": ("rev", 1), "b": ("sort", 2), "c": ("first", 3), "d": ("last", 4),
         "e": ("mid", 5)}


def _pool(path: Path, names, **overrides):
    from taskpgm.tasks.writer import write_pool

    tasks = [overrides.get(n) or _task(n, *TASKS[n]) for n in names]
    tasks.append(_task("held", "dup", 9, role="heldout"))
    if path.exists():
        shutil.rmtree(path)
    write_pool(path, tasks)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """One tiny base model whose tokenizer knows every test task's text."""
    from taskpgm.models.tiny import TinyConfig, build_tiny_model

    tmp = tmp_path_factory.mktemp("base")
    pool = _pool(tmp / "all", list(TASKS))
    return build_tiny_model(pool, tmp / "base", seed=0,
                            config=TinyConfig(vocab_size=128, n_layer=1, n_embd=32, n_head=2))


def _cfg(run: Path, pool: Path, base: Path, **extra):
    return config_from_dict(_cfg_dict(run, pool, base, **extra), "test.yaml")


def _cfg_dict(run: Path, pool: Path, base: Path, **extra):
    return {"run": {"dir": str(run), "seed": 0}, "pool": {"source": "dir", "path": str(pool)},
            "model": {"base": str(base)}, "experts": {"steps": 2, "batch_size": 4},
            "affinity": {"bootstrap": 0}, "sample": {"budget": 20},
            "evaluate": {"max_examples": 2}, "report": {"enabled": False}, "strategies": [],
            **extra}


@pytest.fixture
def counted(monkeypatch):
    """Counts expert trainings (by task) and shards scored (by (expert, task))."""
    from taskpgm.models import scoring, train

    log: dict[str, list] = {"trained": [], "scored": []}
    real_train, real_score = train.train_model, scoring._score_tasks

    def train_model(*args, **kwargs):
        log["trained"].append((kwargs.get("extra_info") or {}).get("task"))
        return real_train(*args, **kwargs)

    def score_tasks(expert, loaded, pool, todo, *args, **kwargs):
        log["scored"] += [(expert, t) for t in todo]
        return real_score(expert, loaded, pool, todo, *args, **kwargs)

    monkeypatch.setattr(train, "train_model", train_model)
    monkeypatch.setattr(scoring, "_score_tasks", score_tasks)

    def reset():
        out = {k: sorted(v) for k, v in log.items()}
        log["trained"].clear()
        log["scored"].clear()
        return out
    return reset


def _run(cfg):
    from taskpgm.pipeline import run_pipeline

    run_pipeline(cfg, progress=False)


def _stat(run: Path, rel: str) -> tuple[int, int]:
    st = (run / rel).stat()
    return st.st_ino, st.st_mtime_ns


def _expert_files(run: Path, task: str) -> dict[str, tuple[int, int]]:
    d = run / "experts" / task
    return {p.relative_to(run).as_posix(): _stat(run, p.relative_to(run).as_posix())
            for p in sorted(d.rglob("*")) if p.is_file()}


def _shards(run: Path) -> set[tuple[str, str]]:
    return {(p.parent.name, p.stem) for p in (run / "scores" / "shards").rglob("*.parquet")}


def test_adding_a_task_trains_one_expert_and_scores_only_its_pairs(tmp_path, base, counted):
    pool, run = tmp_path / "pool", tmp_path / "run"
    _run(_cfg(run, _pool(pool, ["a", "b"]), base))
    first = counted()
    assert first["trained"] == ["a", "b"]
    # 2 experts + base, on 3 tasks (a, b, held)
    assert len(first["scored"]) == 9
    kept = {**_expert_files(run, "a"), **_expert_files(run, "b")}
    shard = "scores/shards/a/b.parquet"
    shard_before = _stat(run, shard)

    _run(_cfg(run, _pool(pool, ["a", "b", "c"]), base))
    again = counted()
    assert again["trained"] == ["c"]
    # c's row on all 4 tasks, and the a, b and base rows on the new task c.
    assert again["scored"] == sorted([("c", t) for t in ("a", "b", "c", "held")]
                                     + [(e, "c") for e in ("a", "b", "base")])
    assert {**_expert_files(run, "a"), **_expert_files(run, "b")} == kept
    assert _stat(run, shard) == shard_before
    # Byte for byte what a fresh run on the grown pool gives.
    fresh = tmp_path / "fresh"
    _run(_cfg(fresh, pool, base))
    assert (run / "affinity.npz").read_bytes() == (fresh / "affinity.npz").read_bytes()
    assert (run / "mixture.json").read_bytes() == (fresh / "mixture.json").read_bytes()
    for rel in ("experts/c/model.safetensors", "experts/a/taskpgm_train.json",
                "experts/experts.json", "scores/scores.json", "scores/identities.json"):
        assert (run / rel).read_bytes() == (fresh / rel).read_bytes(), rel


def test_removing_a_task_trains_and_scores_nothing(tmp_path, base, counted):
    pool, run = tmp_path / "pool", tmp_path / "run"
    _run(_cfg(run, _pool(pool, ["a", "b", "c"]), base))
    counted()
    _run(_cfg(run, _pool(pool, ["a", "c"]), base))
    assert counted() == {"trained": [], "scored": []}
    assert not (run / "experts" / "b").exists()
    assert not any("b" in pair for pair in _shards(run))
    fresh = tmp_path / "fresh"
    _run(_cfg(fresh, pool, base))
    assert (run / "affinity.npz").read_bytes() == (fresh / "affinity.npz").read_bytes()


def test_edited_train_examples_redo_that_expert_and_its_row(tmp_path, base, counted):
    pool, run = tmp_path / "pool", tmp_path / "run"
    _run(_cfg(run, _pool(pool, ["a", "b", "c"]), base))
    counted()
    _run(_cfg(run, _pool(pool, ["a", "b", "c"], b=_task("b", "sort", 77)), base))
    out = counted()
    assert out["trained"] == ["b"]
    # Its probe examples changed too (one seed draws both here): its column is redone.
    assert ("b", "a") in out["scored"] and ("a", "b") in out["scored"]
    assert ("a", "c") not in out["scored"] and ("base", "a") not in out["scored"]


def test_edited_train_split_only_redoes_the_expert_row(tmp_path, base, counted):
    pool, run = tmp_path / "pool", tmp_path / "run"
    _run(_cfg(run, _pool(pool, ["a", "b", "c"]), base))
    counted()
    _run(_cfg(run, _pool(pool, ["a", "b", "c"], b=_task("b", "sort", 77, probe_seed=2)), base))
    out = counted()
    assert out["trained"] == ["b"]
    assert out["scored"] == sorted(("b", t) for t in ("a", "b", "c", "held"))


def test_edited_probe_split_retrains_nothing_and_redoes_its_column(tmp_path, base, counted):
    pool, run = tmp_path / "pool", tmp_path / "run"
    _run(_cfg(run, _pool(pool, ["a", "b", "c"]), base))
    counted()
    _run(_cfg(run, _pool(pool, ["a", "b", "c"], b=_task("b", "sort", 2, probe_seed=50)), base))
    out = counted()
    assert out["trained"] == []
    assert out["scored"] == sorted((e, "b") for e in ("a", "b", "c", "base"))


def test_renamed_task_with_identical_content_is_reused(tmp_path, base, counted):
    pool, run = tmp_path / "pool", tmp_path / "run"
    _run(_cfg(run, _pool(pool, ["a", "b"]), base))
    counted()
    renamed = _task("bee", "sort", 2, ids="b")  # the same file content under a new name
    _run(_cfg(run, _pool_with(pool, ["a"], [renamed]), base))
    assert counted() == {"trained": [], "scored": []}
    assert not (run / "experts" / "b").exists() and (run / "experts" / "bee").is_dir()
    info = json.loads((run / "experts" / "bee" / "taskpgm_train.json").read_text())
    assert info["task"] == "bee"
    fresh = tmp_path / "fresh"
    _run(_cfg(fresh, pool, base))
    for rel in ("affinity.npz", "experts/bee/taskpgm_train.json",
                "experts/bee/model.safetensors", "scores/shards/bee/a.parquet"):
        assert (run / rel).read_bytes() == (fresh / rel).read_bytes(), rel


def _pool_with(path: Path, names, extra):
    from taskpgm.tasks.writer import write_pool

    tasks = [_task(n, *TASKS[n]) for n in names] + list(extra)
    tasks.append(_task("held", "dup", 9, role="heldout"))
    if path.exists():
        shutil.rmtree(path)
    write_pool(path, tasks)
    return path


def test_runs_sharing_a_cache_train_once(tmp_path, base, counted):
    pool, cache = _pool(tmp_path / "pool", ["a", "b"]), tmp_path / "cache"
    _run(_cfg(tmp_path / "one", pool, base, cache={"dir": str(cache)}))
    assert counted()["trained"] == ["a", "b"]
    _run(_cfg(tmp_path / "two", pool, base, cache={"dir": str(cache)}))
    assert counted() == {"trained": [], "scored": []}
    one, two = tmp_path / "one", tmp_path / "two"
    for rel in ("affinity.npz", "experts/a/taskpgm_train.json", "experts/a/model.safetensors",
                "scores/shards/base/b.parquet"):
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    # The cache is no run's output: nothing of it is recorded.
    rec = json.loads((two / "stages.json").read_text())
    assert not any(str(cache) in f for st in rec["stages"].values() for f in st["files"] or {})


def test_a_damaged_cache_entry_is_recomputed_not_used(tmp_path, base, counted):
    pool, cache = _pool(tmp_path / "pool", ["a", "b"]), tmp_path / "cache"
    _run(_cfg(tmp_path / "one", pool, base, cache={"dir": str(cache)}))
    counted()
    weights = sorted((cache / "experts").rglob("model.safetensors"))
    assert len(weights) == 2
    # Damage one entry in place (also what editing a hard-linked run file by hand does).
    data = bytearray(weights[0].read_bytes())
    data[-1] ^= 0xFF
    weights[0].unlink()  # a fresh inode: run one's own copy stays intact
    weights[0].write_bytes(bytes(data))
    shard = min((cache / "shards").rglob("shard.parquet"))
    shard.unlink()  # a half-written entry: a listed file missing
    _run(_cfg(tmp_path / "two", pool, base, cache={"dir": str(cache)}))
    out = counted()
    assert len(out["trained"]) == 1 and len(out["scored"]) >= 1
    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / "affinity.npz").read_bytes() == (two / "affinity.npz").read_bytes()
    # Written back whole.
    from taskpgm.pipeline.cache import Cache, _check, _listing

    for entry in (cache / "experts").glob("*/*"):
        assert _check(entry / "files", _listing(entry))
    assert Cache(cache)  # the cache is still usable
    _run(_cfg(tmp_path / "three", pool, base, cache={"dir": str(cache)}))
    assert counted() == {"trained": [], "scored": []}


def test_a_second_store_of_the_same_entry_keeps_the_first(tmp_path):
    from taskpgm.pipeline.cache import Cache

    cache = Cache(tmp_path / "cache")
    src = tmp_path / "x.bin"
    src.write_bytes(b"first")
    cache.store("shards", "ab" * 32, {"shard.parquet": src})
    entry = cache.entry("shards", "ab" * 32)
    ino = (entry / "files" / "shard.parquet").stat().st_ino
    other = tmp_path / "y.bin"
    other.write_bytes(b"first")
    cache.store("shards", "ab" * 32, {"shard.parquet": other})  # a second run, same entry
    assert (entry / "files" / "shard.parquet").stat().st_ino == ino
    dest = tmp_path / "dest"
    dest.mkdir()
    assert cache.fetch("shards", "ab" * 32, dest) and (dest / "shard.parquet").read_bytes() == b"first"


def test_misspelt_cache_key_and_a_cache_inside_the_run_are_refused():
    with pytest.raises(ConfigError, match="unknown key 'cache.dri'"):
        config_from_dict({"cache": {"dri": "/tmp/c"}}, "c.yaml")
    with pytest.raises(ConfigError, match="unknown key 'cahce'"):
        config_from_dict({"cahce": {"dir": "/tmp/c"}}, "c.yaml")
    with pytest.raises(ConfigError, match="cache.dir is inside run.dir"):
        config_from_dict({"run": {"dir": "/tmp/r"}, "cache": {"dir": "/tmp/r/cache"}}, "c.yaml")
    assert config_from_dict({}, "c.yaml").cache.dir is None


def test_plan_counts_what_will_be_trained_scored_and_reused(tmp_path, base, counted):
    from taskpgm.pipeline import plan_pipeline

    pool, run, cache = tmp_path / "pool", tmp_path / "run", tmp_path / "cache"
    _run(_cfg(run, _pool(pool, ["a", "b"]), base, cache={"dir": str(cache)}))
    _run(_cfg(tmp_path / "other", _pool(tmp_path / "p2", ["c", "a"]), base,
              cache={"dir": str(cache)}))
    counted()
    _pool(pool, ["a", "b", "c", "d"])
    items = {i.stage.name: i for i in plan_pipeline(_cfg(run, pool, base,
                                                         cache={"dir": str(cache)}))}
    assert items["experts"].action == "run"
    assert "experts: 1 to train, 2 reused from the run, 1 from the cache, 0 removed" in \
        items["experts"].reason
    # 25 pairs: (a, b, base) x (a, b, held) in the run; row c on a, c, held and rows a,
    # base on c in the cache from the other run; the other 11 are new.
    assert "shards: 11 to score, 9 reused from the run, 5 from the cache, 0 removed" in \
        items["scores"].reason, items["scores"].reason
    assert counted() == {"trained": [], "scored": []}  # the plan ran nothing


def test_a_users_file_among_the_experts_is_never_removed(tmp_path, base, counted):
    """A keyed stage keeps its outputs across pool changes, but the ownership rules
    hold: a file no record lists is refused, never deleted."""
    from taskpgm.errors import InputError

    pool, run = tmp_path / "pool", tmp_path / "run"
    _run(_cfg(run, _pool(pool, ["a", "b", "c"]), base))
    counted()
    mine = run / "experts" / "b" / "notes.txt"
    mine.write_text("mine")
    with pytest.raises(InputError, match="notes.txt: in a place this run must write"):
        _run(_cfg(run, _pool(pool, ["a", "c"]), base))
    assert mine.read_text() == "mine"
    mine.unlink()
    _run(_cfg(run, pool, base))
    assert not (run / "experts" / "b").exists()
    assert counted()["trained"] == []


# A run killed (SIGKILL) when it reaches one expert or one shard.
KILLER = """
import os, signal, sys
import taskpgm.models.scoring as scoring
import taskpgm.models.train as train

real_train, real_score = train.train_model, scoring._score_tasks
def train_model(*a, **k):
    if (k.get("extra_info") or {}).get("task") == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_train(*a, **k)
def score_tasks(expert, loaded, pool, todo, *a, **k):
    if expert == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_score(expert, loaded, pool, todo, *a, **k)
train.train_model, scoring._score_tasks = train_model, score_tasks
from taskpgm.cli import run
sys.exit(run(["run", sys.argv[1], "--quiet"]))
"""


def _killed_run(tmp_path: Path, cfg: dict, at: str) -> None:
    import subprocess
    import sys

    import yaml

    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-c", KILLER, str(path), at], check=False,
                         capture_output=True, text=True)
    assert out.returncode == -9, out.stderr


@pytest.mark.parametrize("at", ["c", "bee"])  # while training c; while scoring with bee
def test_a_run_killed_after_reusing_resumes_to_the_same_bytes(tmp_path, base, counted, at):
    pool, run, cache = tmp_path / "pool", tmp_path / "run", tmp_path / "cache"
    _run(_cfg(run, _pool(pool, ["a", "b"]), base, cache={"dir": str(cache)}))
    counted()
    # b renamed to bee (moved into place, older mtimes) and c added, then killed.
    _pool_with(pool, ["a"], [_task("bee", "sort", 2, ids="b"), _task("c", *TASKS["c"])])
    _killed_run(tmp_path, _cfg_dict(run, pool, base, cache={"dir": str(cache)}), at)
    _run(_cfg(run, pool, base, cache={"dir": str(cache)}))
    out = counted()
    assert "bee" not in out["trained"] and "a" not in out["trained"]
    fresh = tmp_path / "fresh"
    _run(_cfg(fresh, pool, base))
    for rel in ("affinity.npz", "mixture.json", "experts/bee/taskpgm_train.json",
                "experts/c/model.safetensors", "scores/identities.json"):
        assert (run / rel).read_bytes() == (fresh / rel).read_bytes(), rel
    assert _shards(run) == _shards(fresh)


def test_partial_scoring_reuses_the_pairs_both_pools_sample(tmp_path, base, counted):
    pool, run = tmp_path / "pool", tmp_path / "run"
    partial = {"scoring": {"fraction": 0.6}}
    _run(_cfg(run, _pool(pool, ["a", "b", "c", "d"]), base, **partial))
    counted()
    _run(_cfg(run, _pool(pool, ["a", "b", "c", "d", "e"]), base, **partial))
    out = counted()
    assert out["trained"] == ["e"]
    fresh = tmp_path / "fresh"
    _run(_cfg(fresh, pool, base, **partial))
    assert counted()["scored"] and len(out["scored"]) < len(_shards(fresh))
    assert _shards(run) == _shards(fresh)  # no pair the new plan leaves out is kept
    assert (run / "affinity.npz").read_bytes() == (fresh / "affinity.npz").read_bytes()


def test_lora_experts_from_the_cache_name_this_runs_base(tmp_path, counted):
    """Two runs with a tiny base each (same bytes: same pool and seed) share LoRA experts
    through the cache; the adapters must load this run's base, not the first run's."""
    pool, cache = _pool(tmp_path / "pool", ["a", "b"]), tmp_path / "cache"
    extra = {"model": {"tiny": {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 128}},
             "experts": {"steps": 2, "batch_size": 4, "lora": True},
             "cache": {"dir": str(cache)}}
    one, two = tmp_path / "one", tmp_path / "two"
    _run(config_from_dict({**_cfg_dict(one, pool, Path("unused")), **extra}, "t.yaml"))
    counted()
    shutil.rmtree(one / "experts")  # the first run's experts are gone: only the cache has them
    _run(config_from_dict({**_cfg_dict(two, pool, Path("unused")), **extra}, "t.yaml"))
    assert counted()["trained"] == []
    adapter = json.loads((two / "experts" / "a" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str((two / "base").resolve())
    info = json.loads((two / "experts" / "a" / "taskpgm_train.json").read_text())
    assert info["base"] == "../../base"


def test_reconcile_leaves_and_refuses_what_the_run_does_not_own(tmp_path):
    """The hook sees who owns each file: a stale shard of the user's is left in place, one
    where the run must write is refused, never overwritten or used."""
    from types import SimpleNamespace

    from taskpgm.errors import InputError
    from taskpgm.io import atomic_write_json
    from taskpgm.pipeline.identity import Identities
    from taskpgm.pipeline.reuse import INDEX, reconcile_scores

    ctx = SimpleNamespace(paths=SimpleNamespace(root=tmp_path, scores=tmp_path / "scores"))
    ids = Identities("B", {"a": "ra"}, {"a": "ca", "x": "cx"}, "S", [("a", "a"), ("a", "x")])
    shards = tmp_path / "scores" / "shards" / "a"
    shards.mkdir(parents=True)
    for t in ("a", "x", "old"):
        (shards / f"{t}.parquet").write_bytes(t.encode())
    atomic_write_json(tmp_path / "scores" / INDEX, {"settings": "S", "rows": ids.rows,
                                                    "columns": {**ids.columns, "old": "co"}})
    mine = "scores/shards/a/old.parquet"
    counts = reconcile_scores(ctx, lambda rel: rel != mine, ids)
    assert counts.kept == 2 and (tmp_path / mine).read_bytes() == b"old"  # not needed: left
    edited = Identities("B", {"a": "ra"}, {"a": "ca", "x": "cx2"}, "S", [("a", "a"), ("a", "x")])
    with pytest.raises(InputError, match="x.parquet: in a place this run must write"):
        reconcile_scores(ctx, lambda rel: rel not in (mine, "scores/shards/a/x.parquet"), edited)
    assert (shards / "x.parquet").read_bytes() == b"x"


def test_two_runs_filling_one_cache_at_once_both_succeed(tmp_path, base):
    import subprocess
    import sys

    import yaml

    pool, cache = _pool(tmp_path / "pool", ["a", "b", "c"]), tmp_path / "cache"
    procs = []
    for name in ("one", "two"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_cfg_dict(tmp_path / name, pool, base,
                                                 cache={"dir": str(cache)})))
        cli = "from taskpgm.cli import main; main()"
        procs.append(subprocess.Popen([sys.executable, "-c", cli, "run", str(path), "--quiet"],
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read() if p.stderr else ""
    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / "affinity.npz").read_bytes() == (two / "affinity.npz").read_bytes()
    from taskpgm.pipeline.cache import _check, _listing

    entries = [e for kind in ("experts", "shards") for e in (cache / kind).glob("*/*")]
    assert len(entries) == 3 + 4 * 4 and not [e for e in entries if e.name.startswith(".")]
    assert all(_check(e / "files", _listing(e)) for e in entries)


def test_a_large_base_file_is_hashed_once_per_machine_and_again_when_rewritten(
        tmp_path, monkeypatch):
    from taskpgm.pipeline import identity

    monkeypatch.setenv("TASKPGM_DIGESTS", str(tmp_path / "d" / "digests.json"))
    model = tmp_path / "base"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"\x01" * (identity.PERSIST_MIN_BYTES + 5))
    (model / "config.json").write_text("{}")
    calls = []
    real = identity.sha256_file
    monkeypatch.setattr(identity, "sha256_file", lambda p: calls.append(p.name) or real(p))
    first = identity.model_digest(model)
    assert sorted(calls) == ["config.json", "model.safetensors"]
    monkeypatch.setattr(identity, "_FILE_DIGESTS", {})  # a new process
    calls.clear()
    assert identity.model_digest(model) == first
    assert calls == ["config.json"]  # the large file's digest came from digests.json
    # Rewritten in place, same size, mtime set back: ctime still tells.
    st = weights.stat()
    weights.write_bytes(b"\x02" * (identity.PERSIST_MIN_BYTES + 5))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    monkeypatch.setattr(identity, "_FILE_DIGESTS", {})
    assert identity.model_digest(model) != first
    # An unreadable digests file is only a hint: recomputed, no error.
    (tmp_path / "d" / "digests.json").write_text("{not json")
    monkeypatch.setattr(identity, "_FILE_DIGESTS", {})
    assert identity.model_digest(model) != first
