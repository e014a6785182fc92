"""import -> pool -> sample -> export -> load back, with exact counts per task.

Here the exports are read back with our own parsing and with ``datasets``; the
trainers' own loaders (LLaMA-Factory, TRL, axolotl) read them in test_export_loaders.py.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from export_data import chat_example as _chat
from taskpgm.errors import InputError
from taskpgm.export import dataset_names, exact_probabilities
from taskpgm.mixture.record import Mixture
from taskpgm.sample import (
    FORMATS,
    materialise,
)
from taskpgm.tasks.importers import import_files


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A plain pool (alpha/beta/gamma, prompts and responses that need the separator)
    and the same plus a multi-turn chat task."""
    root = tmp_path_factory.mktemp("rt")
    src = root / "src"
    src.mkdir()
    for k, n in (("alpha", 40), ("beta", 90), ("gamma", 15)):
        (src / f"{k}.jsonl").write_text(
            "".join(json.dumps({"prompt": f"{k} {i}", "response": f"r{i}"}) + "\n" for i in range(n)))
    import_files([src], root / "pool")
    (src / "chat.jsonl").write_text("".join(json.dumps(_chat(i)) + "\n" for i in range(30)))
    import_files([src], root / "chatpool")
    Mixture("t", ["alpha", "beta", "gamma"], np.array([0.5, 0.3, 0.2])).save(root / "mix.json")
    Mixture("t", ["alpha", "beta", "gamma", "chat"],
            np.array([0.4, 0.3, 0.2, 0.1])).save(root / "chatmix.json")
    return root


def _expected(root, fmt, budget=333, pool="pool", mix="mix.json", out=None, **kw):
    out = root / (out or fmt)
    m = materialise(root / pool, root / mix, budget, out, seed=5, format=fmt, **kw)
    assert sum(m.counts().values()) == budget
    return m.counts()


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_and_messages(setup):
    root = setup
    for fmt in ("jsonl", "messages"):
        want = _expected(root, fmt)
        rows = _rows(root / fmt / "train.jsonl")
        assert Counter(r["task"] for r in rows) == Counter(want)
        key = "messages" if fmt == "messages" else "prompt"
        assert all(key in r for r in rows)


def test_train_jsonl_is_the_same_file_whatever_the_format(setup):
    root = setup
    outs = {fmt: f"same-{fmt}" for fmt in FORMATS if fmt != "messages"}
    for fmt, out in outs.items():
        _expected(root, fmt, pool="chatpool", mix="chatmix.json", out=out)
    first = (root / outs["jsonl"] / "train.jsonl").read_bytes()
    assert b'"messages"' not in first  # chat examples are flattened in train.jsonl
    for out in outs.values():
        assert (root / out / "train.jsonl").read_bytes() == first


@pytest.mark.parametrize("fmt", ["hf", "llamafactory", "axolotl", "interleave"])
def test_export_same_seed_same_bytes(setup, fmt):
    if fmt == "hf":
        pytest.importorskip("datasets")
    root = setup
    for out in ("a", "b"):
        _expected(root, fmt, pool="chatpool", mix="chatmix.json", out=f"bytes-{fmt}-{out}")
    a, b = root / f"bytes-{fmt}-a", root / f"bytes-{fmt}-b"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        if f.name != "manifest.json":  # records the pool's own path
            assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_exact_probabilities_sum_to_one():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        counts = rng.integers(1, 10**6, size=int(rng.integers(1, 60))).tolist()
        probs = exact_probabilities(counts)
        assert sum(probs) == 1.0 and all(p > 0 for p in probs)
        assert np.allclose(probs, np.array(counts) / sum(counts), rtol=1e-12, atol=1e-15)
        assert math.isclose(math.fsum(probs), 1.0, abs_tol=1e-15)
    # The case: six decimals summed to 1.000001.
    assert sum(exact_probabilities([133, 100, 33, 67])) == 1.0


def test_dataset_names_cannot_collide():
    names = dataset_names(["a/b", "a_b", "a,b", "A B"] + [f"t{i}" for i in range(8)])
    assert len(set(names)) == len(names) == 12
    assert names[0] == "00_a_b" and names[2] == "02_a_b" and names[11] == "11_t7"
    assert all("," not in n and " " not in n and "/" not in n for n in names)


def test_hf_is_prompt_completion(setup):
    datasets = pytest.importorskip("datasets")
    root = setup
    want = _expected(root, "hf")
    ds = datasets.load_from_disk(str(root / "hf" / "hf"))
    assert ds.column_names == ["task", "id", "prompt", "completion"]
    assert Counter(ds["task"]) == Counter(want)
    train = _rows(root / "hf" / "train.jsonl")
    assert ds["id"] == [r["id"] for r in train]  # sample order
    row = ds[0]
    assert row["prompt"] == train[0]["prompt"] + "\n" and row["completion"] == train[0]["response"]


def test_hf_with_chat_is_conversational(setup):
    datasets = pytest.importorskip("datasets")
    root = setup
    want = _expected(root, "hf", pool="chatpool", mix="chatmix.json", out="hf-chat")
    ds = datasets.load_from_disk(str(root / "hf-chat" / "hf"))
    assert Counter(ds["task"]) == Counter(want)
    for row in ds:
        assert row["completion"][0]["role"] == "assistant" and len(row["completion"]) == 1
        if row["task"] == "chat":
            assert [m["role"] for m in row["prompt"]] == [
                "system", "user", "assistant", "user"]
            assert row["completion"][0]["content"].startswith("b")
        else:
            assert row["prompt"] == [{"content": f"{row['task']} {row['completion'][0]['content'][1:]}",
                                      "role": "user"}]


def test_separator_is_configurable(setup):
    pytest.importorskip("datasets")
    import datasets

    root = setup
    _expected(root, "hf", out="hf-sep", separator=" => ")
    row = datasets.load_from_disk(str(root / "hf-sep" / "hf"))[0]
    assert row["prompt"].endswith(" => ") and " => " not in row["completion"]
    with pytest.raises(InputError, match="separator"):
        _expected(root, "hf", out="hf-bad", separator=None)
    assert not (root / "hf-bad").exists()


def test_llamafactory_files(setup):
    root = setup
    want = _expected(root, "llamafactory", pool="chatpool", mix="chatmix.json")
    d = root / "llamafactory" / "llamafactory"
    info = json.loads((d / "dataset_info.json").read_text())
    mix = yaml.safe_load((d / "mix.yaml").read_text())
    names = mix["dataset"].split(",")
    assert names == list(info) == dataset_names(list(want))
    assert mix["mix_strategy"] == "concat" and mix["dataset_dir"] == "llamafactory"
    assert mix["mask_history"] is True and "interleave_probs" not in mix
    got = {}
    for name, task in zip(names, want, strict=True):
        rows = _rows(d / info[name]["file_name"])
        got[task] = len(rows)
        if task == "chat":
            assert info[name]["formatting"] == "sharegpt" and "messages" in rows[0]
        else:
            assert info[name]["formatting"] == "alpaca"
            assert rows[0]["instruction"].endswith("\n") and rows[0]["output"].startswith("r")
    assert got == want
    # The streaming alternative, in a comment: probabilities summing to exactly 1.
    line = next(x for x in (d / "mix.yaml").read_text().splitlines() if "interleave_probs" in x)
    probs = [float(p) for p in line.split(":", 1)[1].split(",")]
    assert sum(probs) == 1.0 and np.allclose(probs, np.array(list(want.values())) / 333)


def test_llamafactory_refuses_a_conversation_it_would_drop(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # Two user turns in a row: LLaMA-Factory's sharegpt converter would drop every one.
    (src / "odd.jsonl").write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"hi {i}"}, {"role": "user", "content": "again"},
        {"role": "assistant", "content": f"ok {i}"}]}) + "\n" for i in range(20)))
    import_files([src], tmp_path / "pool")
    Mixture("t", ["odd"], np.array([1.0])).save(tmp_path / "mix.json")
    with pytest.raises(InputError, match="sharegpt"):
        materialise(tmp_path / "pool", tmp_path / "mix.json", 10, tmp_path / "out",
                    format="llamafactory")
    assert not (tmp_path / "out").exists()
    materialise(tmp_path / "pool", tmp_path / "mix.json", 10, tmp_path / "out", format="hf")


def test_axolotl_files(setup):
    root = setup
    want = _expected(root, "axolotl", pool="chatpool", mix="chatmix.json")
    out = root / "axolotl"
    block = yaml.safe_load((out / "axolotl.yaml").read_text())
    assert block["dataset_exact_deduplication"] is False and block["train_on_inputs"] is False
    plain, chat = block["datasets"]
    assert not Path(plain["path"]).is_absolute() and (out / plain["path"]).is_file()
    assert plain["type"]["format"] == "{instruction}" and chat["type"] == "chat_template"
    rows = _rows(out / plain["path"]) + _rows(out / chat["path"])
    assert Counter(r["task"] for r in rows) == Counter(want)
    conv = _rows(out / chat["path"])[0]["messages"]
    assert [m["train"] for m in conv] == [False] * (len(conv) - 1) + [True]


def test_axolotl_without_chat_has_one_entry(setup):
    root = setup
    want = _expected(root, "axolotl", out="axolotl-plain")
    block = yaml.safe_load((root / "axolotl-plain" / "axolotl.yaml").read_text())
    assert [e["path"] for e in block["datasets"]] == ["axolotl/prompt_response.jsonl"]
    rows = _rows(root / "axolotl-plain" / "axolotl" / "prompt_response.jsonl")
    assert Counter(r["task"] for r in rows) == Counter(want)
    assert not (root / "axolotl-plain" / "axolotl" / "chat.jsonl").exists()


@pytest.mark.parametrize("streaming", [False, True])
def test_interleave_respects_budget_and_max_epochs(setup, streaming):
    datasets = pytest.importorskip("datasets")
    root = setup
    out = f"interleave-{streaming}"
    m = materialise(root / "pool", root / "mix.json", 2000, root / out, seed=5,
                    max_epochs=60, format="interleave")
    want = m.counts()
    spec = json.loads((root / out / "interleave.json").read_text())
    assert spec["tasks"] == ["alpha", "beta", "gamma"] and spec["counts"] == list(want.values())
    assert spec["stopping_strategy"] == "all_exhausted_without_replacement"
    assert sum(spec["probabilities"]) == 1.0
    # As a consumer calls it, per docs/pool.md.
    parts = [datasets.load_dataset("json", data_files=str(root / out / f), split="train",
                                   streaming=streaming) for f in spec["data_files"]]
    mixed = datasets.interleave_datasets(parts, probabilities=spec["probabilities"],
                                         seed=spec["seed"],
                                         stopping_strategy=spec["stopping_strategy"])
    rows = list(mixed)
    assert len(rows) == 2000
    assert Counter(r["task"] for r in rows) == Counter(want)
    # Repeats: each example at most its task's epochs (within --max-epochs).
    epochs = {t.task: t.epochs for t in m.tasks}
    uses = Counter((r["task"], r["id"]) for r in rows)
    for (task, _), n in uses.items():
        assert n <= epochs[task] <= 60
    assert max(epochs.values()) > 1
    assert rows[0]["prompt"].endswith("\n")


def test_load_interleaved(setup):
    pytest.importorskip("datasets")
    from taskpgm.export import load_interleaved

    root = setup
    want = _expected(root, "interleave", pool="chatpool", mix="chatmix.json", out="il-chat")
    mixed = load_interleaved(root / "il-chat" / "interleave.json")
    assert len(mixed) == 333 and Counter(mixed["task"]) == Counter(want)
