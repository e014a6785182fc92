"""The synthetic suite and the BIG-bench converter (fixture tarball; no download)."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter

import pytest

from taskpgm.errors import InputError
from taskpgm.tasks.bigbench import build_bigbench_pool, cache_dir, default_suite
from taskpgm.tasks.synth import build_synthetic_pool, synthetic_tasks, variant_counts


def test_synth_structure_and_determinism(tmp_path, cli):
    pool = build_synthetic_pool(tmp_path / "a", seed=0)
    train, held = pool.train_tasks(), pool.heldout_tasks()
    # Uneven templates per family (like T0/FLAN), one held-out task per family.
    per_family = Counter(t.family for t in train)
    assert sorted(per_family.values()) == [1, 2, 3, 5] and len(train) == 11
    assert sorted(t.family for t in held) == sorted(per_family)
    assert pool.manifest.metadata["variants"] == dict(per_family)
    sizes = sorted(t.count("train") for t in train)
    assert sizes[0] < 100 and sizes[-1] >= 500
    assert all(t.count("train") == 0 and t.count("eval") > 0 for t in held)
    mc = [t for t in pool.tasks if t.kind == "multiple_choice"]
    assert mc and all(e.options[e.answer] == e.response
                      for e in pool.examples(mc[0].name, "train"))
    for t in pool.tasks:  # no prompt shared between splits of a task; short texts
        seen = [e.prompt for s in ("train", "probe", "eval") for e in pool.examples(t.name, s)]
        assert len(seen) == len(set(seen))
        assert max(len(p.split()) for p in seen) < 40
    code, _, _ = cli("tasks", "synth", "--out", tmp_path / "b", "--seed", "0")
    assert code == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jsonl"))
    for f in files + [tmp_path / "a" / "pool.json"]:
        f = (tmp_path / "a" / f)
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()
    build_synthetic_pool(tmp_path / "c", seed=1)
    assert (tmp_path / "c" / files[0]).read_bytes() != (tmp_path / "a" / files[0]).read_bytes()
    code, out, _ = cli("tasks", "stats", tmp_path / "a")
    assert code == 0 and "largest_heldout" in out


def test_synth_variant_counts_are_seeded_and_can_be_given(tmp_path):
    fams = ("reverse", "sort", "code", "largest")
    # The seed permutes which family gets many templates: not always the same one.
    assert len({tuple(variant_counts(fams, s).values()) for s in range(4)}) > 1
    assert variant_counts(fams, 7) == variant_counts(fams, 7)
    tasks = synthetic_tasks(0, counts=(3, 3, 3, 3), scale=0.05)
    assert Counter(t.info.family for t in tasks if t.info.role == "train") == {
        f: 3 for f in fams}
    # Sizes vary within a family, so size does not stand in for the family.
    sizes = {len(t.splits["train"]) for t in tasks if t.info.family == "sort"
             and t.info.role == "train"}
    assert len(sizes) == 3
    for bad, match in (((3, 3), "2 given for 4"), ((0, 1, 1, 1), "between 1 and 5"),
                       ((6, 1, 1, 1), "between 1 and 5")):
        with pytest.raises(InputError, match=match):
            synthetic_tasks(0, counts=bad)


def _fixture_sdist(path):
    tasks = {
        "toy_mc": {"canary": "CANARY GUID x", "name": "toy_mc", "description": "d",
                   "examples": [{"input": f"is {i} even?", "target_scores": {"yes": int(i % 2 == 0),
                                                                              "no": int(i % 2)}}
                                for i in range(30)]},
        "toy_gen/sub_a": {"canary": "CANARY GUID y", "task_prefix": "Sort:",
                          "example_input_prefix": "\nList: ", "example_output_prefix": "\nSorted: ",
                          "examples": [{"input": f"b{i} a{i}", "target": [f"a{i} b{i}"]}
                                       for i in range(20)]},
    }
    with tarfile.open(path, "w:gz") as tar:
        for key, body in tasks.items():
            data = json.dumps(body).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{key}/task.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_bigbench_fixture_conversion(tmp_path, cli):
    sdist = _fixture_sdist(tmp_path / "bigbench-1.0.0.tar.gz")
    pool = build_bigbench_pool(["toy_mc"], tmp_path / "pool", heldout=["toy_gen"], sdist=sdist,
                               cache=tmp_path / "cache")
    assert pool.names == ["toy_mc", "toy_gen_sub_a"]
    mc, gen = pool.task("toy_mc"), pool.task("toy_gen_sub_a")
    assert mc.kind == "multiple_choice" and mc.metadata["canary"] == "CANARY GUID x"
    assert gen.role == "heldout" and gen.count("train") == 0 and sum(gen.counts.values()) == 20
    ex = next(e for s in ("train", "probe", "eval") for e in pool.examples("toy_mc", s)
              if e.prompt.startswith("Q: is 4 even?"))
    assert ex.options == ("yes", "no") and ex.response == "yes"
    g = pool.examples("toy_gen_sub_a", "eval")[0]
    assert g.prompt.startswith("Sort:\nList: ") and g.prompt.endswith("\nSorted: ")
    with pytest.raises(InputError, match="unknown BIG-bench task 'toy_mcc'.*toy_mc"):
        build_bigbench_pool(["toy_mcc"], tmp_path / "p2", sdist=sdist, cache=tmp_path / "cache")
    assert not (tmp_path / "p2").exists()
    code, _, err = cli("tasks", "bigbench", "--tasks", "nosuch", "--out", tmp_path / "p3",
                       "--sdist", sdist)
    assert code == 2 and "unknown BIG-bench task 'nosuch'" in err


def test_default_suite_shape():
    suite = default_suite()
    assert 30 <= len(suite["train"]) <= 60 and not set(suite["train"]) & set(suite["heldout"])


def test_real_bigbench_if_cached(tmp_path):
    sdist = cache_dir() / "bigbench-1.0.0.tar.gz"
    if not sdist.is_file():
        pytest.skip("bigbench sdist not cached")
    pool = build_bigbench_pool(["word_sorting"], tmp_path / "pool", heldout=["navigate"])
    assert pool.task("navigate").kind == "multiple_choice"
    assert "canary" in pool.task("word_sorting").metadata["canary"].lower()
