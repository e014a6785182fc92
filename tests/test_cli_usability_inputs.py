"""A demanding user's bad inputs: each is one line, exit code 2, nothing written.

Found by walking every non-pipeline command with wrong values; each test failed before
its fix (a traceback, a silently wrong result, or noise on the terminal).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from taskpgm.errors import TaskPGMError


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n: int, tag: str) -> list[dict]:
    return [{"prompt": f"{tag} question {i}", "response": f"answer {i}"} for i in range(n)]


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


# -- seeds --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_pool(tmp_path_factory):
    from taskpgm.tasks.importers import import_files

    root = tmp_path_factory.mktemp("usability")
    src = root / "src"
    for t in ("alpha", "beta"):
        _jsonl(src / f"{t}.jsonl", _rows(30, t))
    return import_files([src], root / "pool").pool


def test_negative_seed_is_refused_not_a_numpy_traceback(small_pool, tmp_path, cli):
    from taskpgm.mixture import Mixture
    from taskpgm.sample import materialise

    mix = tmp_path / "mix.json"
    Mixture("test", ["alpha", "beta"], np.array([0.5, 0.5])).save(mix)
    out = tmp_path / "data"
    code, _, err = cli("sample", "--pool", small_pool.root, "--mixture", mix, "--budget", 10,
                       "--out", out, "--seed", -1)
    assert code == 2 and "--seed" in err and "Traceback" not in err
    assert not out.exists()
    # The library refuses it in one line too (it used to raise numpy's ValueError).
    with pytest.raises(TaskPGMError, match="seed must be a non-negative integer"):
        materialise(small_pool, mix, 10, out, seed=-1, allocation="multinomial")
    assert not out.exists()


def test_negative_seed_in_affinity_and_training_config():
    from taskpgm.affinity import compute_affinity
    from taskpgm.affinity.synthetic import low_rank_means, table_from_means

    table = table_from_means(low_rank_means(3, seed=0), 6, seed=0)
    with pytest.raises(TaskPGMError, match="seed must be a non-negative integer"):
        compute_affinity(table, bootstrap=5, seed=-1)
    pytest.importorskip("torch")
    from taskpgm.models.train import TrainConfig

    with pytest.raises(TaskPGMError, match="seed must be a non-negative integer"):
        TrainConfig(seed=-1).check()


# -- split options ------------------------------------------------------------------

def test_negative_probe_max_is_refused(tmp_path, cli):
    from taskpgm.tasks.splits import SplitConfig

    with pytest.raises(TaskPGMError, match="--probe-max"):
        SplitConfig(probe_max=-5)
    src = _jsonl(tmp_path / "t.jsonl", _rows(20, "t"))
    code, _, err = cli("tasks", "import", src, "--out", tmp_path / "pool", "--probe-max", -5)
    _one_line_error(code, err, "--probe-max")
    assert not (tmp_path / "pool").exists()
    code, _, err = cli("tasks", "import", src, "--out", tmp_path / "pool",
                       "--probe-fraction", 1.5)
    _one_line_error(code, err, "--probe-fraction")


# -- importing common directory layouts ---------------------------------------------

def test_split_named_files_are_one_task_with_those_splits(tmp_path):
    from taskpgm.tasks.importers import import_files

    _jsonl(tmp_path / "src" / "qa" / "train.jsonl", _rows(30, "qa"))
    _jsonl(tmp_path / "src" / "qa" / "test.jsonl", _rows(8, "qa-test"))
    _jsonl(tmp_path / "src" / "math.jsonl", _rows(20, "math"))
    pool = import_files([tmp_path / "src"], tmp_path / "pool").pool
    # Before: tasks 'qa.train' and 'qa.test', the test file used as training data.
    assert sorted(pool.names) == ["math", "qa"]
    assert pool.task("qa").count("eval") == 8
    assert {e.prompt for e in pool.examples("qa", "eval")} == {r["prompt"] for r in _rows(8, "qa-test")}
    assert pool.task("qa").count("train") + pool.task("qa").count("probe") == 30


def test_split_named_files_clash_with_a_task_file(tmp_path, cli):
    _jsonl(tmp_path / "src" / "qa" / "train.jsonl", _rows(30, "qa"))
    _jsonl(tmp_path / "src" / "qa.jsonl", _rows(20, "other"))
    code, _, err = cli("tasks", "import", tmp_path / "src", "--out", tmp_path / "pool")
    _one_line_error(code, err, "'qa'", "rename one")
    assert not (tmp_path / "pool").exists()


def test_a_pool_directory_imports_task_by_task(small_pool, tmp_path):
    from taskpgm.tasks.importers import import_files
    from taskpgm.tasks.pool import Pool

    src = Pool.load(small_pool.root)
    # Mark one task held out, as a synthetic or BIG-bench pool would.
    raw = json.loads((src.root / "pool.json").read_text())
    copy = tmp_path / "src_pool"
    import shutil

    shutil.copytree(src.root, copy)
    raw["tasks"][1]["role"] = "heldout"
    raw["tasks"][1]["family"] = "fam"
    (copy / "pool.json").write_text(json.dumps(raw))
    pool = import_files([copy], tmp_path / "again").pool
    # Before: "pool.json: unknown split 'format'".
    assert pool.names == src.names
    assert pool.task("beta").role == "heldout" and pool.task("beta").family == "fam"
    for name in pool.names:
        for split in ("train", "probe", "eval"):
            assert sorted(e.id for e in pool.examples(name, split)) == \
                sorted(e.id for e in src.examples(name, split))


# -- affinity / solve inputs ----------------------------------------------------------

def test_csv_without_header_is_named(tmp_path, cli):
    csv = tmp_path / "aff.csv"
    csv.write_text("0,1\n1,0\n")
    code, _, err = cli("solve", "--affinity", csv, "--out", tmp_path / "m.json")
    _one_line_error(code, err, "aff.csv:1", "header of task names")
    csv.write_text("a,b\n0,x\n1,0\n")
    code, _, err = cli("solve", "--affinity", csv, "--out", tmp_path / "m.json")
    _one_line_error(code, err, "aff.csv:2", "'x'")
    csv.write_bytes(b"a,b\n0,\xff\n1,0\n")
    code, _, err = cli("solve", "--affinity", csv, "--out", tmp_path / "m.json")
    _one_line_error(code, err, "not UTF-8")
    assert not (tmp_path / "m.json").exists()


def test_affinity_progress_leaves_no_blank_lines_off_a_terminal(cli, tmp_path):
    from taskpgm.affinity.synthetic import low_rank_means, table_from_means
    from taskpgm.scores import ScoresManifest, shard_path, write_manifest, write_shard

    table = table_from_means(low_rank_means(4, seed=0), 6, seed=0)
    root = tmp_path / "scores"
    for (e, t), shard in table._shards.items():
        write_shard(shard_path(root, e, t), shard)
    write_manifest(root, ScoresManifest(experts=table.experts, tasks=table.tasks))
    code, _, err = cli("affinity", "--scores", root, "--out", tmp_path / "a.npz")
    assert code == 0
    assert err == "", repr(err)  # was a run of empty lines from the transient bar


# -- sample --format hf ---------------------------------------------------------------

def test_hf_export_does_not_print_datasets_progress_bars(small_pool, tmp_path, cli):
    pytest.importorskip("datasets")
    from taskpgm.mixture import Mixture

    mix = tmp_path / "mix.json"
    Mixture("test", ["alpha", "beta"], np.array([0.5, 0.5])).save(mix)
    code, _, err = cli("sample", "--pool", small_pool.root, "--mixture", mix, "--budget", 20,
                       "--out", tmp_path / "d", "--format", "hf")
    assert code == 0
    assert "Generating" not in err and "Saving the dataset" not in err, err
    import datasets

    assert datasets.is_progress_bar_enabled()  # restored for the user's own code


# -- models -------------------------------------------------------------------------------

def test_tiny_model_sizes_are_checked_before_building(small_pool, tmp_path, cli):
    pytest.importorskip("torch")
    from taskpgm.models.tiny import TinyConfig

    for kwargs, option in (({"n_head": 0}, "--heads"), ({"n_embd": 0}, "--dim"),
                           ({"n_layer": 0}, "--layers"), ({"n_positions": 1}, "--positions")):
        with pytest.raises(TaskPGMError, match=option):
            TinyConfig(**kwargs).check()
    # --heads 0 was a ZeroDivisionError traceback, --dim 0 another one.
    for args in (("--heads", 0), ("--dim", 0)):
        code, _, err = cli("models", "tiny", "--pool", small_pool.root, "--out",
                           tmp_path / "m", *args)
        _one_line_error(code, err, args[0])
    assert not (tmp_path / "m").exists()


def test_score_refuses_a_bad_device_before_writing(tmp_path, cli):
    pytest.importorskip("torch")
    import torch

    out = tmp_path / "scores"
    code, _, err = cli("score", "--pool", tmp_path / "pool", "--experts", tmp_path / "ex",
                       "--out", out, "--device", "tpu9")
    _one_line_error(code, err, "--device 'tpu9'")
    if not torch.cuda.is_available():
        code, _, err = cli("score", "--pool", tmp_path / "pool", "--experts", tmp_path / "ex",
                           "--out", out, "--device", "cuda")
        _one_line_error(code, err, "CUDA is not available")
    assert not out.exists()
    code, _, err = cli("score", "--pool", tmp_path / "pool", "--experts", tmp_path / "ex",
                       "--out", out, "--max-batch-tokens", 0)
    assert code == 2 and "--max-batch-tokens" in err


def test_models_eval_checks_split_and_decoding_length(tmp_path, cli):
    code, _, err = cli("models", "eval", "--model", tmp_path / "m", "--pool", tmp_path / "p",
                       "--split", "test")
    _one_line_error(code, err, "--split 'test'", "train, probe, eval")
    code, _, err = cli("models", "eval", "--model", tmp_path / "m", "--pool", tmp_path / "p",
                       "--max-new-tokens", 0)
    assert code == 2 and "--max-new-tokens" in err and "Traceback" not in err


def test_settings_mismatch_of_a_finished_expert(tmp_path):
    pytest.importorskip("torch")
    from taskpgm.models.train import TRAIN_MARKER, TrainConfig, settings_mismatch

    d = tmp_path / "expert"
    d.mkdir()
    (d / TRAIN_MARKER).write_text(json.dumps({
        "base": str(tmp_path / "base"), "config": {"steps": 40, "lr": 0.001, "lora": False}}))
    assert settings_mismatch(d, tmp_path / "base", TrainConfig(steps=40, lr=1e-3)) == []
    diffs = settings_mismatch(d, tmp_path / "other", TrainConfig(steps=200, lr=1e-3))
    assert any(x.startswith("base ") for x in diffs) and "steps 40 (now 200)" in diffs


def test_experts_listing_keeps_experts_from_earlier_runs(small_pool, tmp_path):
    pytest.importorskip("torch")
    from taskpgm.models.tiny import TinyConfig, build_tiny_model
    from taskpgm.models.train import train_experts

    base = build_tiny_model(small_pool, tmp_path / "base",
                            config=TinyConfig(vocab_size=300, n_layer=1, n_embd=16, n_head=2,
                                              n_positions=64))
    out = tmp_path / "experts"
    train_experts(small_pool, base, out, tasks=["alpha"], steps=1, batch_size=2, progress=False)
    train_experts(small_pool, base, out, tasks=["beta"], steps=1, batch_size=2, progress=False)
    # Before: experts.json listed only the last run's tasks.
    assert json.loads((out / "experts.json").read_text())["tasks"] == ["alpha", "beta"]
