"""Import settings a real user needs, from the config: an HF dataset's task column and
field names, family labels from a field; mixed or misplaced settings refused in one line."""

from __future__ import annotations

import json

import pytest

from taskpgm.config import config_from_dict
from taskpgm.errors import ConfigError, InputError
from taskpgm.tasks.importers import import_sources
from taskpgm.tasks.pool import Pool

datasets = pytest.importorskip("datasets")


def _hf(tmp_path):
    rows = {"question": [f"q{i}?" for i in range(40)], "answer": [f"a{i}" for i in range(40)],
            "task": ["alpha" if i % 2 else "beta" for i in range(40)],
            "fam": ["F1" if i % 2 else "F2" for i in range(40)]}
    path = tmp_path / "hf"
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    return path


def test_pool_stage_imports_an_hf_dataset_by_task_column(tmp_path):
    from taskpgm.pipeline.stages import PipelineContext, stage_pool

    hf = _hf(tmp_path)
    cfg = config_from_dict({"run": {"dir": str(tmp_path / "run")},
                            "pool": {"source": "import", "paths": [str(hf)], "task_column": "task",
                                     "prompt_field": "question", "response_field": "answer",
                                     "family_field": "fam"},
                            "evaluate": {"tasks": "all"},
                            "strategies": [{"name": "u", "method": "uniform"}]}, "c.yaml")
    stage_pool(PipelineContext(cfg, tmp_path / "run"))
    pool = Pool.load(tmp_path / "run" / "pool")
    assert sorted(pool.names) == ["alpha", "beta"]
    assert {pool.task(n).family for n in pool.names} == {"F1", "F2"}
    ex = pool.examples("alpha", "train")[0]
    assert ex.prompt.startswith("q") and ex.response.startswith("a")


def test_hf_dataset_mixed_with_files_or_task_column_on_files_is_one_line(tmp_path):
    hf = _hf(tmp_path)
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"p{i}", "response": "r"}) + "\n"
                         for i in range(20)))
    with pytest.raises(InputError, match="imported on its own"):
        import_sources([hf, f], tmp_path / "out")
    with pytest.raises(InputError, match="task_column applies to a dataset saved"):
        import_sources([f], tmp_path / "out2", task_column="task")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_import_keys_for_other_sources_are_refused_at_load():
    with pytest.raises(ConfigError, match="pool.task_column applies to pool.source 'import'"):
        config_from_dict({"pool": {"task_column": "task"}}, "c.yaml")
    with pytest.raises(ConfigError, match="exclude each other"):
        config_from_dict({"pool": {"source": "import", "paths": ["x"], "family_field": "f",
                                   "family_pattern": "(a)"}}, "c.yaml")
