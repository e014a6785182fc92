"""Importers, splits, de-duplication, leakage, and bad input named precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskpgm.errors import InputError
from taskpgm.tasks.importers import import_files, import_hf_dataset
from taskpgm.tasks.pool import Pool
from taskpgm.tasks.splits import SplitConfig


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n: int, tag: str = "q") -> list[dict]:
    return [{"prompt": f"{tag} {i}?", "response": f"a{i}"} for i in range(n)]


def test_import_jsonl_and_reference_json(tmp_path):
    _jsonl(tmp_path / "src" / "alpha.jsonl", _rows(50))
    ref = {"train": [{"inputs": f"x{i}", "targets": [f"y{i}"]} for i in range(40)],
           "validation": [{"inputs": f"v{i}", "targets": f"w{i}"} for i in range(7)]}
    (tmp_path / "src" / "beta.json").write_text(json.dumps(ref))
    res = import_files([tmp_path / "src"], tmp_path / "pool")
    pool = Pool.load(tmp_path / "pool")
    assert pool.names == ["alpha", "beta"]
    a, b = pool.task("alpha"), pool.task("beta")
    assert sum(a.counts.values()) == 50 and a.count("eval") == 5 and a.count("probe") == 5
    assert b.count("eval") == 7  # the given validation split becomes eval
    assert b.count("train") + b.count("probe") == 40
    # no example is in two splits
    ids = [e.id for s in ("train", "probe", "eval") for e in pool.examples("beta", s)]
    assert len(ids) == len(set(ids)) == 47
    assert res.report.duplicates == 0


def test_split_is_independent_of_file_order(tmp_path):
    rows = _rows(80)
    _jsonl(tmp_path / "a" / "t.jsonl", rows)
    _jsonl(tmp_path / "b" / "t.jsonl", list(reversed(rows)))
    import_files([tmp_path / "a" / "t.jsonl"], tmp_path / "p1")
    import_files([tmp_path / "b" / "t.jsonl"], tmp_path / "p2")
    for split in ("train", "probe", "eval"):
        one = {e.id for e in Pool.load(tmp_path / "p1").examples("t", split)}
        two = {e.id for e in Pool.load(tmp_path / "p2").examples("t", split)}
        assert one == two


def test_dedup_and_leakage_removed_or_strict(tmp_path):
    rows = _rows(30) + _rows(3)  # three exact duplicates
    rows = [dict(r, split="train") for r in rows]
    rows.append({"prompt": "q 1?", "response": "other", "split": "validation"})  # leaks
    rows.append({"prompt": "fresh", "response": "z", "split": "validation"})
    _jsonl(tmp_path / "t.jsonl", rows)
    res = import_files([tmp_path / "t.jsonl"], tmp_path / "pool")
    assert res.report.duplicates == 3 and res.report.leaked == 1
    pool = Pool.load(tmp_path / "pool")
    train_prompts = [e.prompt for s in ("train", "probe") for e in pool.examples("t", s)]
    assert "q 1?" not in train_prompts and len(train_prompts) == 29
    with pytest.raises(InputError, match="leakage"):
        import_files([tmp_path / "t.jsonl"], tmp_path / "pool2", split=SplitConfig(strict=True))
    assert not (tmp_path / "pool2").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "a", "response": "b"}\n{"prompt": "c", \n', r"t\.jsonl:2: malformed JSON"),
        ('{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n', r"t\.jsonl:2: missing field"),
        ('{"prompt": "a", "response": 3.5}\n{"prompt": {"x": 1}, "response": "x"}\n',
         r"t\.jsonl:2: field 'prompt' must be a string"),
        ("\n\n", r"task 't' is empty"),
    ],
)
def test_bad_input_is_named_and_nothing_written(tmp_path, cli, content, message):
    (tmp_path / "t.jsonl").write_text(content)
    out = tmp_path / "pool"
    with pytest.raises(InputError, match=message):
        import_files([tmp_path / "t.jsonl"], out)
    assert not out.exists()
    code, _, err = cli("tasks", "import", tmp_path / "t.jsonl", "--out", out)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_existing_pool_survives_a_failed_import(tmp_path):
    _jsonl(tmp_path / "good.jsonl", _rows(20))
    import_files([tmp_path / "good.jsonl"], tmp_path / "pool")
    before = (tmp_path / "pool" / "pool.json").read_bytes()
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    with pytest.raises(InputError, match="bad.jsonl:1"):
        import_files([tmp_path / "good.jsonl", tmp_path / "bad.jsonl"], tmp_path / "pool")
    assert (tmp_path / "pool" / "pool.json").read_bytes() == before


def test_duplicate_task_names(tmp_path):
    _jsonl(tmp_path / "a" / "t.jsonl", _rows(10))
    _jsonl(tmp_path / "b" / "t.jsonl", _rows(10, "w"))
    with pytest.raises(InputError, match="duplicate task name 't'"):
        import_files([tmp_path / "a" / "t.jsonl", tmp_path / "b" / "t.jsonl"], tmp_path / "p")


def test_messages_and_alpaca_records(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"hi {i}"},
                          {"role": "assistant", "content": f"yo {i}"}]} for i in range(10)]
    rows += [{"instruction": f"do {i}", "input": "ctx", "output": f"done {i}"} for i in range(10)]
    _jsonl(tmp_path / "chat.jsonl", rows)
    import_files([tmp_path / "chat.jsonl"], tmp_path / "pool")
    pool = Pool.load(tmp_path / "pool")
    exs = [e for s in ("train", "probe", "eval") for e in pool.examples("chat", s)]
    assert len(exs) == 20
    assert sum(e.messages is not None for e in exs) == 10
    assert any(e.prompt == "do 3\nctx" and e.response == "done 3" for e in exs)


def test_hf_dataset_with_task_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"question": [f"q{i}" for i in range(60)], "answer": [f"a{i}" for i in range(60)],
            "source": ["x" if i % 3 else "y" for i in range(60)]}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                               "test": datasets.Dataset.from_dict(
                                   {"question": ["t1", "t2"], "answer": ["1", "2"], "source": ["x", "y"]})})
    dd.save_to_disk(str(tmp_path / "hf"))
    import_hf_dataset(tmp_path / "hf", tmp_path / "pool", task_column="source")
    pool = Pool.load(tmp_path / "pool")
    assert pool.names == ["x", "y"]
    assert sum(pool.task("x").counts.values()) == 41 and pool.task("x").count("eval") == 1
    with pytest.raises(InputError, match="no column 'task'"):
        import_hf_dataset(tmp_path / "hf", tmp_path / "pool3", task_column="task")
