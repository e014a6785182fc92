"""Family labels for imported pools: --family-pattern, --family-field, and their errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from taskpgm.errors import InputError
from taskpgm.tasks.importers import (
    compile_family_pattern,
    import_files,
    import_hf_dataset,
    import_sources,
)
from taskpgm.tasks.pool import Pool


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n: int, tag: str, **extra: str) -> list[dict]:
    return [{"prompt": f"{tag} {i}?", "response": f"a{i}", **extra} for i in range(n)]


def _src(root: Path, names: list[str]) -> Path:
    for name in names:
        _jsonl(root / "src" / f"{name}.jsonl", _rows(20, name))
    return root / "src"


def _families(pool_dir: Path) -> dict[str, str | None]:
    raw = json.loads((pool_dir / "pool.json").read_text())
    return {t["name"]: t.get("family") for t in raw["tasks"]}


NAMES = ["sort_template_1", "sort_template_2", "reverse_template_1", "misc"]


def test_pattern_with_group_via_cli(tmp_path, cli):
    src = _src(tmp_path, NAMES)
    code, _, err = cli("tasks", "import", src, "--out", tmp_path / "pool",
                       "--family-pattern", r"^(.*)_template_\d+$")
    assert code == 0, err
    assert _families(tmp_path / "pool") == {
        "sort_template_1": "sort", "sort_template_2": "sort",
        "reverse_template_1": "reverse",
        "misc": "misc",  # unmatched: its own family
    }
    assert Pool.load(tmp_path / "pool").task("sort_template_2").family == "sort"


def test_pattern_without_group_uses_whole_match(tmp_path, cli):
    src = _src(tmp_path, NAMES)
    code, _, err = cli("tasks", "import", src, "--out", tmp_path / "pool",
                       "--family-pattern", r"^[a-z]+(?=_template)")
    assert code == 0, err
    fam = _families(tmp_path / "pool")
    assert fam["sort_template_1"] == fam["sort_template_2"] == "sort"
    assert fam["reverse_template_1"] == "reverse"
    assert fam["misc"] == "misc"


def test_unmatched_names_are_their_own_family(tmp_path):
    src = _src(tmp_path, NAMES)
    import_files([src], tmp_path / "pool", family_pattern=r"^(sort)_")
    assert _families(tmp_path / "pool") == {
        "sort_template_1": "sort", "sort_template_2": "sort",
        "reverse_template_1": "reverse_template_1", "misc": "misc",
    }


def test_library_import_sources_with_pattern_is_deterministic(tmp_path):
    src = _src(tmp_path, NAMES)
    res = import_sources([src], tmp_path / "p1", family_pattern=r"^(.*)_template_\d+$")
    assert {t.name: t.family for t in res.pool.tasks}["reverse_template_1"] == "reverse"
    assert all(t.family for t in Pool.load(tmp_path / "p1").tasks)
    meta = json.loads((tmp_path / "p1" / "pool.json").read_text())["metadata"]
    assert meta["family_pattern"] == r"^(.*)_template_\d+$"
    import_sources([src], tmp_path / "p2", family_pattern=r"^(.*)_template_\d+$")
    assert (tmp_path / "p1" / "pool.json").read_bytes() == (tmp_path / "p2" / "pool.json").read_bytes()


def test_without_options_imported_tasks_have_no_family_and_load(tmp_path):
    src = _src(tmp_path, ["a", "b"])
    import_sources([src], tmp_path / "pool")
    raw = json.loads((tmp_path / "pool" / "pool.json").read_text())
    assert "family_pattern" not in raw["metadata"] and "family_field" not in raw["metadata"]
    assert [t.family for t in Pool.load(tmp_path / "pool").tasks] == [None, None]
    # A pool.json written before families existed (no "family" key) still loads.
    for t in raw["tasks"]:
        t.pop("family", None)
    (tmp_path / "pool" / "pool.json").write_text(json.dumps(raw))
    assert [t.family for t in Pool.load(tmp_path / "pool").tasks] == [None, None]


def test_pool_source_keeps_families_unless_pattern_given(tmp_path):
    src = _src(tmp_path, NAMES)
    import_files([src], tmp_path / "first", family_pattern=r"^(.*)_template_\d+$")
    import_files([tmp_path / "first"], tmp_path / "kept")
    assert _families(tmp_path / "kept")["sort_template_1"] == "sort"
    import_files([tmp_path / "first"], tmp_path / "relabelled", family_pattern=r"_(template)_")
    assert _families(tmp_path / "relabelled")["sort_template_1"] == "template"
    assert _families(tmp_path / "relabelled")["misc"] == "misc"


def test_pattern_matching_no_task_is_an_error(tmp_path, cli):
    src = _src(tmp_path, NAMES)
    out = tmp_path / "pool"
    with pytest.raises(InputError, match=r"family pattern '\^\(.\*\)_tempalte' matches none"):
        import_sources([src], out, family_pattern="^(.*)_tempalte")
    assert not out.exists()
    code, _, err = cli("tasks", "import", src, "--out", out,
                       "--family-pattern", "^(.*)_tempalte")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "_tempalte" in err and "Traceback" not in err
    assert not out.exists()


def test_invalid_regex_is_one_line_and_nothing_written(tmp_path, cli):
    src = _src(tmp_path, NAMES)
    out = tmp_path / "pool"
    code, _, err = cli("tasks", "import", src, "--out", out, "--family-pattern", "^(.*_x")
    assert code == 2
    assert err.startswith("error: --family-pattern '^(.*_x' is not a valid regular expression")
    assert "missing )" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".pool.*"))
    # An existing pool at --out is left untouched.
    import_files([src], out)
    before = (out / "pool.json").read_bytes()
    code, _, _ = cli("tasks", "import", src, "--out", out, "--family-pattern", "[a-")
    assert code == 2 and (out / "pool.json").read_bytes() == before


def test_compile_family_pattern_helper():
    assert compile_family_pattern(r"^(\w+)_\d+$").groups == 1
    assert isinstance(compile_family_pattern("x"), re.Pattern)
    with pytest.raises(InputError, match=r"^pool\.family_pattern '\(' is not a valid regular"):
        compile_family_pattern("(", "pool.family_pattern")
    with pytest.raises(InputError, match="family_pattern"):
        compile_family_pattern("a[")


def test_family_field_from_jsonl_rows(tmp_path, cli):
    _jsonl(tmp_path / "src" / "t1.jsonl", _rows(20, "t1", skill="arith"))
    _jsonl(tmp_path / "src" / "t2.jsonl", _rows(20, "t2", skill="arith"))
    _jsonl(tmp_path / "src" / "t3.jsonl", _rows(20, "t3", skill="logic"))
    code, _, err = cli("tasks", "import", tmp_path / "src", "--out", tmp_path / "pool",
                       "--family-field", "skill")
    assert code == 0, err
    assert _families(tmp_path / "pool") == {"t1": "arith", "t2": "arith", "t3": "logic"}
    # the field is a label, not part of the examples
    assert all(set(json.loads(line)) == {"id", "prompt", "response"}
               for line in (tmp_path / "pool" / "tasks" / "t1" / "train.jsonl").open())


def test_family_field_across_split_files_and_json(tmp_path):
    _jsonl(tmp_path / "src" / "qa" / "train.jsonl", _rows(20, "q", fam="reading"))
    _jsonl(tmp_path / "src" / "qa" / "test.jsonl", _rows(5, "t", fam="reading"))
    ref = {"train": _rows(20, "r", fam="math"), "validation": _rows(3, "v", fam="math")}
    (tmp_path / "src" / "ref.json").write_text(json.dumps(ref))
    import_files([tmp_path / "src"], tmp_path / "pool", family_field="fam")
    assert _families(tmp_path / "pool") == {"qa": "reading", "ref": "math"}


def test_family_field_inconsistent_is_an_error(tmp_path, cli):
    rows = _rows(10, "t", skill="arith") + _rows(3, "u", skill="logic")
    _jsonl(tmp_path / "t.jsonl", rows)
    out = tmp_path / "pool"
    with pytest.raises(InputError) as info:
        import_files([tmp_path / "t.jsonl"], out, family_field="skill")
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 't.jsonl'}:11: task 't'")
    assert "'logic'" in msg and "'arith'" in msg and f"{tmp_path / 't.jsonl'}:1 " in msg
    assert not out.exists()
    code, _, err = cli("tasks", "import", tmp_path / "t.jsonl", "--out", out,
                       "--family-field", "skill")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "t.jsonl:11" in err and not out.exists()


def test_family_field_missing_in_a_row_is_an_error(tmp_path, cli):
    rows = _rows(5, "t", skill="arith") + _rows(1, "x")
    ref = {"train": rows}
    (tmp_path / "t.json").write_text(json.dumps(ref))
    with pytest.raises(InputError, match=r"t\.json: train\[5\]: missing family field 'skill'"):
        import_files([tmp_path / "t.json"], tmp_path / "pool", family_field="skill")
    _jsonl(tmp_path / "u.jsonl", rows)
    code, _, err = cli("tasks", "import", tmp_path / "u.jsonl", "--out", tmp_path / "pool",
                       "--family-field", "skill")
    assert code == 2 and "u.jsonl:6: missing family field 'skill'" in err
    assert err.count("\n") == 1 and not (tmp_path / "pool").exists()


def test_both_options_is_an_error(tmp_path, cli):
    src = _src(tmp_path, NAMES)
    out = tmp_path / "pool"
    code, _, err = cli("tasks", "import", src, "--out", out,
                       "--family-pattern", "^(.*)_template", "--family-field", "skill")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "--family-pattern" in err and "--family-field" in err and not out.exists()
    with pytest.raises(InputError, match="not both"):
        import_sources([src], out, family_pattern="x", family_field="skill")
    assert not out.exists()


def test_hf_dataset_family_column_and_pattern(tmp_path):
    datasets = pytest.importorskip("datasets")
    n = 60
    rows = {"question": [f"q{i}" for i in range(n)], "answer": [f"a{i}" for i in range(n)],
            "task": [f"{'add' if i % 2 else 'sub'}_v{i % 3}" for i in range(n)],
            "skill": ["arith"] * n}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "hf"))
    import_hf_dataset(tmp_path / "hf", tmp_path / "p1", task_column="task", family_field="skill")
    assert set(_families(tmp_path / "p1").values()) == {"arith"}
    import_sources([tmp_path / "hf"], tmp_path / "p2", task_column="task",
                   family_pattern=r"^(\w+)_v\d$")
    fam = _families(tmp_path / "p2")
    assert fam["add_v0"] == fam["add_v2"] == "add" and fam["sub_v1"] == "sub"
    bad = dict(rows, skill=["arith"] * (n - 1) + ["logic"])
    datasets.Dataset.from_dict(bad).save_to_disk(str(tmp_path / "hf_bad"))
    with pytest.raises(InputError, match=r"hf_bad: train row 59: task 'add_v2'"):
        import_hf_dataset(tmp_path / "hf_bad", tmp_path / "p3", task_column="task",
                          family_field="skill")
    with pytest.raises(InputError, match="no family column 'topic'"):
        import_hf_dataset(tmp_path / "hf", tmp_path / "p3", task_column="task",
                          family_field="topic")
    assert not (tmp_path / "p3").exists()
