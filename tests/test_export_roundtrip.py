"""import -> pool -> sample -> export -> load back, with exact counts per task."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from taskpgm.mixture.record import Mixture
from taskpgm.sample import materialise
from taskpgm.tasks.importers import import_files


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt")
    for k, n in (("alpha", 40), ("beta", 90), ("gamma", 15)):
        (root / "src").mkdir(exist_ok=True)
        (root / "src" / f"{k}.jsonl").write_text(
            "".join(json.dumps({"prompt": f"{k} {i}", "response": f"r{i}"}) + "\n" for i in range(n)))
    pool = import_files([root / "src"], root / "pool").pool
    Mixture("t", ["alpha", "beta", "gamma"], np.array([0.5, 0.3, 0.2])).save(root / "mix.json")
    return root, pool


def _expected(root, fmt, budget=333):
    m = materialise(root / "pool", root / "mix.json", budget, root / fmt, seed=5, format=fmt)
    assert sum(m.counts().values()) == budget
    return m.counts()


def test_jsonl_and_messages(setup):
    root, _ = setup
    for fmt in ("jsonl", "messages"):
        want = _expected(root, fmt)
        rows = [json.loads(x) for x in (root / fmt / "train.jsonl").open()]
        assert Counter(r["task"] for r in rows) == Counter(want)
        key = "messages" if fmt == "messages" else "prompt"
        assert all(key in r for r in rows)


def test_hf_load_from_disk(setup):
    datasets = pytest.importorskip("datasets")
    root, _ = setup
    want = _expected(root, "hf")
    ds = datasets.load_from_disk(str(root / "hf" / "hf"))
    assert Counter(ds["task"]) == Counter(want)


def test_llamafactory(setup):
    root, _ = setup
    want = _expected(root, "llamafactory")
    d = root / "llamafactory" / "llamafactory"
    info = json.loads((d / "dataset_info.json").read_text())
    got = {t: len((d / e["file_name"]).read_text().splitlines()) for t, e in info.items()}
    assert got == want
    mix = yaml.safe_load((d / "mix.yaml").read_text())
    probs = [float(p) for p in str(mix["interleave_probs"]).split(",")]
    assert mix["dataset"].split(",") == list(want) and abs(sum(probs) - 1) < 1e-5


def test_axolotl(setup):
    root, _ = setup
    want = _expected(root, "axolotl")
    block = yaml.safe_load((root / "axolotl" / "axolotl.yaml").read_text())
    path = block["datasets"][0]["path"]
    rows = [json.loads(x) for x in Path(path).read_text().splitlines()]
    assert Counter(r["task"] for r in rows) == Counter(want)
    assert block["datasets"][0]["type"]["field_instruction"] == "prompt"


def test_interleave(setup):
    pytest.importorskip("datasets")
    from taskpgm.export import load_interleaved

    root, _pool = setup
    _expected(root, "interleave")
    spec = json.loads((root / "interleave" / "interleave.json").read_text())
    assert spec["tasks"] == ["alpha", "beta", "gamma"]
    assert np.allclose(spec["probabilities"], [0.5, 0.3, 0.2], atol=2e-3)
    mixed = load_interleaved(root / "interleave" / "interleave.json")
    assert {mixed["prompt"][i].split()[0] for i in range(len(mixed))} == {"alpha", "beta", "gamma"}
