"""scoring.sampling: adaptive: a balanced first round, then a second round where the
completion is least certain, recorded in scores/adaptive.json; the report marks the
estimated affinity entries and their estimated error.

The pipeline runs use a ``dir`` pool of five tiny hand-made training tasks (and one
held-out task) and one prebuilt base model, like tests/test_reuse.py.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from taskpgm.config import config_from_dict
from taskpgm.errors import ConfigError

WORDS = ["red", "blue", "green", "gold", "black", "white", "pink", "grey"]
RULES = {"rev": lambda w: w[::-1], "sort": sorted, "first": lambda w: w[:1],
         "last": lambda w: w[-1:], "mid": lambda w: w[1:2], "dup": lambda w: w + w}
TASKS = {"a": ("rev", 1), "b": ("sort", 2), "c": ("first", 3), "d": ("last", 4),
         "e": ("mid", 5), "held": ("dup", 9)}
N = 5  # training tasks
FRACTION = 0.6  # round(0.6 * 25) = 15 pairs: the diagonal, 5 first-round, 5 second-round
ADAPTIVE = {"scoring": {"fraction": FRACTION, "sampling": "adaptive"}}


def _task(name: str):
    from taskpgm.tasks.pool import Example, TaskInfo
    from taskpgm.tasks.writer import TaskData

    rule, seed = TASKS[name]

    def split(kind: str, n: int, s: int) -> list:
        rng = random.Random(s)
        return [Example(f"{name}-{kind}-{i:03d}", f"{rule}: {' '.join(w)}\n",
                        " ".join(RULES[rule](w)))
                for i, w in enumerate(rng.sample(WORDS, 3) for _ in range(n))]

    role = "heldout" if name == "held" else "train"
    splits = {"probe": split("p", 4, seed + 1), "eval": split("e", 3, seed + 2)}
    if role == "train":
        splits["train"] = split("t", 8, seed)
    return TaskData(TaskInfo(name=name, role=role, family=rule), splits)


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    from taskpgm.tasks.writer import write_pool

    path = tmp_path_factory.mktemp("pool") / "pool"
    write_pool(path, [_task(n) for n in TASKS])
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory, pool) -> Path:
    pytest.importorskip("torch")
    from taskpgm.models.tiny import TinyConfig, build_tiny_model

    return build_tiny_model(pool, tmp_path_factory.mktemp("base") / "base", seed=0,
                            config=TinyConfig(vocab_size=128, n_layer=1, n_embd=32, n_head=2))


def _cfg_dict(run: Path, pool: Path, base: Path, report: bool = False, **extra):
    return {"run": {"dir": str(run), "seed": 0}, "pool": {"source": "dir", "path": str(pool)},
            "model": {"base": str(base)}, "experts": {"steps": 2, "batch_size": 4},
            "affinity": {"bootstrap": 0}, "sample": {"budget": 20},
            "evaluate": {"max_examples": 2}, "report": {"enabled": report,
                                                        "influence": False},
            "strategies": [], **extra}


def _cfg(run, pool, base, **kw):
    return config_from_dict(_cfg_dict(run, pool, base, **kw), "test.yaml")


def _run(cfg) -> None:
    from taskpgm.pipeline import run_pipeline

    run_pipeline(cfg, progress=False)


def _shards(run: Path) -> set[tuple[str, str]]:
    return {(p.parent.name, p.stem) for p in (run / "scores" / "shards").rglob("*.parquet")}


def _record(run: Path) -> dict:
    return json.loads((run / "scores" / "adaptive.json").read_text())


@pytest.fixture
def counted(monkeypatch):
    """The (expert, task) shards scored, in order."""
    from taskpgm.models import scoring

    log: list[tuple[str, str]] = []
    real = scoring._score_tasks

    def score_tasks(expert, loaded, pool, todo, *args, **kwargs):
        log.extend((expert, t) for t in todo)
        return real(expert, loaded, pool, todo, *args, **kwargs)

    monkeypatch.setattr(scoring, "_score_tasks", score_tasks)
    return log


@pytest.fixture(scope="module")
def finished(tmp_path_factory, pool, base) -> Path:
    run = tmp_path_factory.mktemp("adaptive") / "run"
    _run(_cfg(run, pool, base, report=True, **ADAPTIVE))
    return run


# -- config -------------------------------------------------------------------------------

def test_adaptive_is_a_scoring_choice_and_a_misspelling_is_refused_at_load(tmp_path):
    cfg = config_from_dict({"scoring": {"fraction": 0.5, "sampling": "adaptive"}}, "c.yaml")
    assert cfg.scoring.sampling == "adaptive"
    with pytest.raises(ConfigError, match="adaptive"):
        config_from_dict({"scoring": {"fraction": 0.5, "sampling": "adaptiv"}}, "c.yaml")


# -- the library rule on a constructed case ------------------------------------------------

def test_second_round_goes_where_the_first_round_left_the_completion_unsure():
    from taskpgm.affinity.completion import adaptive_pairs, sample_mask

    n, k = 12, 20
    rng = np.random.default_rng(0)
    a, b, u, v = rng.normal(size=(4, n))
    m = -3 + a[:, None] + b[None, :] + 0.5 * np.outer(u, v) + 0.02 * rng.normal(size=(n, n))
    # Well covered, except expert 0 and task 0: their diagonal and one pair each.
    first = sample_mask(n, 0.5, seed=1, strategy="balanced")
    first[0, :] = first[:, 0] = False
    first[0, 0] = first[0, 5] = first[7, 0] = True
    new = adaptive_pairs(m, first, k, seed=0)
    assert new.sum() == k and not (new & first).any()
    on_sparse = int(new[0].sum() + new[:, 0].sum())
    # A balanced draw gives every expert and task the same share: about 2k/n = 3.3 here.
    balanced = sample_mask(n, 0.5, seed=2, strategy="balanced", n_off=k) & ~np.eye(n, dtype=bool)
    assert balanced[0].sum() + balanced[:, 0].sum() <= 4
    assert on_sparse >= k // 2, on_sparse


# -- the pipeline ---------------------------------------------------------------------------

@pytest.mark.slow
def test_adaptive_scores_exactly_the_planned_pairs_and_always_the_fixed_ones(finished, pool,
                                                                             base):
    from taskpgm.pipeline.stages import PipelineContext, unscored_pairs

    run = finished
    train = list("abcde")
    shards = _shards(run)
    scored_train = {(e, t) for e, t in shards if e in train and t in train}
    assert len(scored_train) == round(FRACTION * N * N)  # exactly the planned number
    for t in train:
        assert (t, t) in shards and (t, "held") in shards  # diagonal, held-out tasks
    assert {("base", t) for t in [*train, "held"]} <= shards  # the base row
    rec = _record(run)
    first = {tuple(p) for p in rec["first_round"]}
    second = {tuple(p) for p in rec["second_round"]}
    assert len(second) == 5 and len(first - {(t, t) for t in train}) == 5
    assert not first & second and first | second == scored_train
    # What unscored_pairs (and so the affinity and the reuse identities) sees is exactly
    # the complement of the recorded pairs.
    ctx = PipelineContext(_cfg(run, pool, base, **ADAPTIVE), run)
    everything = {(e, t) for e in train for t in train}
    assert set(unscored_pairs(ctx)) == everything - scored_train
    prov = json.loads(str(np.load(run / "affinity.npz")["provenance"]))
    assert {tuple(p) for p in prov["unscored_pairs"]} == everything - scored_train
    assert prov["partial_scoring"]["sampling"] == "adaptive"
    err = prov["completion"]["estimated_error"]
    assert err["hidden_pairs"] >= 1 and np.isfinite(err["affinity_rmse"])
    # The record is one of the stage's recorded outputs, like every shard.
    stages = json.loads((run / "stages.json").read_text())["stages"]
    assert "scores/adaptive.json" in stages["scores"]["files"]


@pytest.mark.slow
def test_second_round_differs_from_the_balanced_draw_of_the_same_size(finished):
    from taskpgm.affinity.completion import sample_mask

    rec = _record(finished)
    names = list("abcde")
    scored = {tuple(p) for p in rec["first_round"] + rec["second_round"]}
    plain = sample_mask(N, FRACTION, seed=0, strategy="balanced")
    plain_pairs = {(names[i], names[j]) for i, j in zip(*np.nonzero(plain), strict=True)}
    assert len(plain_pairs) == len(scored) and plain_pairs != scored


@pytest.mark.slow
def test_report_marks_the_estimated_entries_and_their_error(finished):
    html = (finished / "report.html").read_text()
    prov = json.loads(str(np.load(finished / "affinity.npz")["provenance"]))
    from taskpgm.report.figures import estimated_entries

    k = int(np.triu(estimated_entries(list("abcde"), prov["unscored_pairs"]), 1).sum())
    assert k > 0
    assert f"{k} of {N * (N - 1) // 2} affinity entries are estimated" in html
    assert "Estimated error: RMSE" in html and "sampling adaptive" in html


def test_report_of_a_fully_scored_matrix_mentions_no_estimates(tmp_path):
    from taskpgm.affinity.io import AffinityMatrix
    from taskpgm.mixture.record import Mixture
    from taskpgm.report.html import ReportInputs, build_report

    names = ["x", "y", "z"]
    s = -np.abs(np.subtract.outer(np.arange(3.0), np.arange(3.0)))
    mix = {"u": Mixture("uniform", names, np.full(3, 1 / 3))}
    full = build_report(tmp_path / "full", ReportInputs(AffinityMatrix(names, s, "pmi"), mix))
    assert "are estimated" not in full.read_text()
    part = AffinityMatrix(names, s, "pmi", provenance={"unscored_pairs": [["x", "z"]]})
    text = build_report(tmp_path / "part", ReportInputs(part, mix)).read_text()
    assert "1 of 3 affinity entries are estimated" in text
    assert "calibrated kernel" not in text
    cal = {**mix, "t": Mixture("taskpgm", names, np.full(3, 1 / 3), {"kernel": "calibrated"})}
    text = build_report(tmp_path / "cal", ReportInputs(part, cal)).read_text()
    assert "Mixtures on the calibrated kernel (t)" in text
    assert "calibrated kernel" not in full.read_text()


@pytest.mark.slow
def test_same_seed_gives_the_same_bytes_in_two_run_dirs(finished, pool, base, tmp_path):
    other = tmp_path / "other"
    _run(_cfg(other, pool, base, report=True, **ADAPTIVE))
    for rel in ("scores/adaptive.json", "scores/identities.json", "affinity.npz",
                "mixture.json", "report.html"):
        assert (other / rel).read_bytes() == (finished / rel).read_bytes(), rel
    assert _shards(other) == _shards(finished)


@pytest.mark.slow
def test_plan_says_the_second_round_is_chosen_when_the_first_is_scored(finished, pool, base,
                                                                       tmp_path):
    from taskpgm.pipeline import reuse
    from taskpgm.pipeline.stages import PipelineContext

    fresh = PipelineContext(_cfg(tmp_path / "fresh", pool, base, **ADAPTIVE), tmp_path / "fresh")
    line = reuse.describe_scores(fresh, set())
    # The first round: the diagonal, 5 pairs, the base row (6) and the held-out column (5).
    assert line.startswith("shards: 21 to score")
    assert "then 5 adaptive second-round pairs, chosen when the first round is scored" in line
    done = PipelineContext(_cfg(finished, pool, base, **ADAPTIVE), finished)
    assert reuse.describe_scores(done, set()).startswith("shards: 0 to score, 26 reused")


@pytest.mark.slow
def test_a_deleted_second_round_shard_is_rescored_alone_to_the_same_bytes(finished, pool, base,
                                                                         tmp_path, counted):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    _run(_cfg(run, pool, base, report=True, **ADAPTIVE))  # the copy is up to date
    assert counted == []
    e, t = _record(run)["second_round"][0]
    before = (run / "affinity.npz").read_bytes()
    (run / "scores" / "shards" / e / f"{t}.parquet").unlink()
    _run(_cfg(run, pool, base, report=True, **ADAPTIVE))
    assert counted == [(e, t)]
    assert (run / "affinity.npz").read_bytes() == before
    assert _record(run) == _record(finished)


KILLER = """
import os, signal, sys
from pathlib import Path
import taskpgm.models.scoring as scoring

real = scoring._score_tasks
def score_tasks(expert, loaded, pool, todo, *a, **k):
    # Killed in the second round: once its record is written.
    if Path(sys.argv[2], "scores", "adaptive.json").is_file():
        os.kill(os.getpid(), signal.SIGKILL)
    return real(expert, loaded, pool, todo, *a, **k)
scoring._score_tasks = score_tasks
from taskpgm.cli import run
sys.exit(run(["run", sys.argv[1], "--quiet"]))
"""


@pytest.mark.slow
def test_a_run_killed_in_the_second_round_resumes_to_the_same_pairs_and_bytes(
        finished, pool, base, tmp_path, counted):
    import yaml

    run = tmp_path / "run"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_cfg_dict(run, pool, base, report=True, **ADAPTIVE)))
    out = subprocess.run([sys.executable, "-c", KILLER, str(path), str(run)], check=False,
                         capture_output=True, text=True)
    assert out.returncode == -9, out.stderr
    killed_with = _record(run)
    _run(_cfg(run, pool, base, report=True, **ADAPTIVE))
    assert _record(run) == killed_with == _record(finished)
    assert set(counted) == {tuple(p) for p in killed_with["second_round"]}
    for rel in ("scores/adaptive.json", "affinity.npz", "mixture.json", "report.html"):
        assert (run / rel).read_bytes() == (finished / rel).read_bytes(), rel
    assert _shards(run) == _shards(finished)


@pytest.mark.slow
def test_switching_away_from_adaptive_removes_its_record(finished, pool, base, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    _run(_cfg(run, pool, base, scoring={"fraction": FRACTION, "sampling": "balanced"}))
    assert not (run / "scores" / "adaptive.json").exists()
