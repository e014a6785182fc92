"""The foundation: atomic IO, line-numbered JSONL errors, CLI error handling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_json, iter_jsonl
from taskpgm.tasks.pool import Example


def test_atomic_write_leaves_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_jsonl_error_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2,\n')
    with pytest.raises(InputError, match=r"d\.jsonl:3: malformed JSON"):
        list(iter_jsonl(path))


def test_example_from_messages_splits_last_assistant_turn():
    ex = Example.from_record(
        {"id": "x", "messages": [{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "yo"}]},
        "f:1",
    )
    assert ex.response == "yo" and ex.prompt.endswith("assistant: ")


def test_example_rejects_answer_out_of_range():
    with pytest.raises(InputError, match="f:7: field 'answer'"):
        Example.from_record({"id": 1, "prompt": "p", "response": "r", "options": ["a"],
                             "answer": 3}, "f:7")


def test_cli_user_error_is_one_line_exit_2(cli, tmp_path):
    from taskpgm.affinity.io import load_affinity

    bad = tmp_path / "m.npy"
    np.save(bad, np.array([[0.0, np.nan], [np.nan, 0.0]]))
    with pytest.raises(InputError, match=r"entry \[0, 1\] is nan"):
        load_affinity(bad)
    out_file = tmp_path / "mixture.json"
    code, _out, err = cli("solve", "--affinity", bad, "--out", out_file)
    assert code == 2
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert err.startswith("error: ") and "m.npy" in err
    assert not out_file.exists()


def test_atomic_outputs_get_umask_permissions(tmp_path):
    import os

    from taskpgm.io import atomic_dir

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "f.json", {})
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
