"""Hostile inputs and a hostile environment: one line, exit code 2, nothing damaged.

Disk full and other OSErrors, damaged or absurd affinity matrices, bad bytes on a known
line, symlinked task directories, empty names files, files where directories belong.
Each test failed on the code before its fix (a traceback, a wrong line number, a silent
fallback, or a user's file deleted), except where a comment says a case already held.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from taskpgm.errors import InputError


def _one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for n in needles:
        assert str(n) in lines[0], lines[0]
    return lines[0]


def _jsonl(path: Path, n: int, tag: str = "q") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": f"{tag} question {i}",
                                        "response": f"answer {i}"}) + "\n" for i in range(n)))
    return path


def _leftovers(folder: Path) -> list[str]:
    """Temporary siblings the atomic writers may have left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def good_npy(tmp_path) -> Path:
    path = tmp_path / "aff.npy"
    np.save(path, np.array([[0.0, 0.5, 0.1], [0.5, 0.0, 0.2], [0.1, 0.2, 0.0]]))
    return path


# -- 1. disk full and other environment errors ---------------------------------------

def test_disk_full_on_write_is_one_line_naming_path_and_size(cli, good_npy, tmp_path,
                                                             monkeypatch):
    out = tmp_path / "out" / "path.json"
    out.parent.mkdir()
    out.write_text("previous result\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = cli("solve", "--affinity", good_npy, "--path", "--out", out)
    line = _one_line_error(code, err, f"error: {out}: {os.strerror(errno.ENOSPC)}")
    assert "needed" in line and "KiB" in line
    assert out.read_text() == "previous result\n"  # the old file is untouched
    assert _leftovers(out.parent) == []  # and no temporary file is left


@pytest.mark.parametrize("err_no", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                    errno.ENOTDIR, errno.EISDIR, errno.EIO])
def test_any_oserror_on_write_is_one_line_naming_the_path(cli, tmp_path, monkeypatch, err_no):
    import taskpgm.io

    out = tmp_path / "config.yaml"
    out.write_text("mine\n")

    def fail(src, dst):
        raise OSError(err_no, os.strerror(err_no), str(src), str(dst))

    monkeypatch.setattr(taskpgm.io.os, "replace", fail)
    code, _, err = cli("init", "--out", out, "--force")
    _one_line_error(code, err, f"error: {out}: {os.strerror(err_no)}")
    assert out.read_text() == "mine\n"
    assert _leftovers(tmp_path) == []


def test_oserror_without_a_file_name_is_still_one_line(cli, tmp_path, monkeypatch):
    import taskpgm.cli.pipeline

    def boom(*_a, **_k):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(taskpgm.cli.pipeline, "_execute", boom)
    config = tmp_path / "c.yaml"
    config.write_text("run: {dir: r}\n")
    code, _, err = cli("run", config)
    _one_line_error(code, err, os.strerror(errno.EIO))


def test_writing_onto_a_directory_is_one_line(cli, tmp_path):
    target = tmp_path / "adir"
    (target / "keep").mkdir(parents=True)
    code, _, err = cli("init", "--out", target, "--force")
    _one_line_error(code, err, f"error: {target}:")
    assert (target / "keep").is_dir()
    assert _leftovers(tmp_path) == []


def test_output_below_a_regular_file_is_one_line(cli, good_npy, tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("user notes\n")
    code, _, err = cli("solve", "--affinity", good_npy, "--out", blocker / "sub" / "mix.json")
    _one_line_error(code, err, str(blocker))
    code, _, err = cli("init", "--out", blocker / "config.yaml")
    _one_line_error(code, err, str(blocker))
    assert blocker.read_text() == "user notes\n"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_permission_denied_is_one_line(cli, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = cli("init", "--out", locked / "config.yaml")
    finally:
        locked.chmod(0o700)
    _one_line_error(code, err, str(locked), os.strerror(errno.EACCES))


def test_atomic_write_failing_rename_keeps_old_file_and_names_target(tmp_path, monkeypatch):
    import taskpgm.io
    from taskpgm.io import atomic_write_bytes

    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), str(dst))

    monkeypatch.setattr(taskpgm.io.os, "replace", full)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(path, b"new data" * 100)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(path)  # not the hidden temporary name
    assert info.value.needed_bytes == 800
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_atomic_write_failing_write_keeps_old_file(tmp_path, monkeypatch):
    from taskpgm.io import atomic_write_json, describe_os_error

    path = tmp_path / "r.json"
    path.write_text('{"old": 1}\n')

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic_write_json(path, {"new": list(range(10))})
    assert info.value.filename == str(path)
    assert describe_os_error(info.value).startswith(f"{path}: {os.strerror(errno.ENOSPC)}")
    assert path.read_text() == '{"old": 1}\n'
    assert _leftovers(tmp_path) == []


def test_atomic_dir_failing_swap_puts_the_old_directory_back(tmp_path, monkeypatch):
    import taskpgm.io
    from taskpgm.io import atomic_dir

    out = tmp_path / "pool"
    out.mkdir()
    (out / "pool.json").write_text("old pool\n")
    real_replace = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old moved aside, new about to move in
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(taskpgm.io.os, "replace", second_fails)
    with pytest.raises(OSError) as info, atomic_dir(out, replaces="pool.json") as tmp:
        (tmp / "pool.json").write_text("new pool\n")
    assert info.value.filename == str(out)
    monkeypatch.undo()
    assert (out / "pool.json").read_text() == "old pool\n"
    assert _leftovers(tmp_path) == []


def test_atomic_dir_never_replaces_a_regular_file(tmp_path):
    from taskpgm.io import atomic_dir

    path = tmp_path / "results"
    path.write_text("precious\n")
    with pytest.raises(InputError, match="is a file"), atomic_dir(path) as tmp:
        (tmp / "x").write_text("x")
    assert path.read_text() == "precious\n"
    assert _leftovers(tmp_path) == []


_FULL_DISK_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, subprocess, sys
    mnt = sys.argv[1]
    cmd = [sys.executable, "-c", "import sys; from taskpgm.cli import main; main()"]
    def run(*args):
        p = subprocess.run(cmd + list(args), capture_output=True, text=True)
        return {"rc": p.returncode, "err": p.stderr}
    res = {"init": run("init", "--out", f"{mnt}/config.yaml")}
    before = open(f"{mnt}/config.yaml", "rb").read()
    fd = os.open(f"{mnt}/fill", os.O_WRONLY | os.O_CREAT)  # fill the disk
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    os.close(fd)
    res["again"] = run("init", "--out", f"{mnt}/config.yaml", "--force")
    res["synth"] = run("tasks", "synth", "--out", f"{mnt}/pool")
    res["kept"] = open(f"{mnt}/config.yaml", "rb").read() == before
    res["files"] = sorted(os.listdir(mnt))
    print(json.dumps(res))
""")


def test_real_full_disk_on_a_small_tmpfs(tmp_path):
    """A real ENOSPC: a 1 MiB tmpfs in a private mount namespace (skipped where not allowed)."""
    unshare = shutil.which("unshare")
    if os.name != "posix" or unshare is None or shutil.which("mount") is None:
        pytest.skip("needs unshare and mount")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "full.py"
    script.write_text(_FULL_DISK_SCRIPT)
    flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    shell = (f'mount -t tmpfs -o size=1m tmpfs "$1" || exit 97; '
             f'exec "{sys.executable}" "{script}" "$1"')
    proc = subprocess.run([unshare, *flags, "sh", "-c", shell, "sh", str(mnt)],
                          capture_output=True, text=True, timeout=240, check=False)
    if proc.returncode == 97 or (proc.returncode != 0 and not proc.stdout.strip()
                                 and "Traceback" not in proc.stderr):
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["init"]["rc"] == 0, res
    for key in ("again", "synth"):
        _one_line_error(res[key]["rc"], res[key]["err"], os.strerror(errno.ENOSPC))
    assert f"{mnt}/config.yaml: " in res["again"]["err"]
    assert "needed" in res["again"]["err"]
    assert f"{mnt}/pool" in res["synth"]["err"]
    assert res["kept"], "the existing config.yaml was damaged"
    assert res["files"] == ["config.yaml", "fill"], res["files"]  # no temporaries left


# -- 2. damaged and absurd affinity matrices ------------------------------------------

def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


_M = np.array([[0.0, 0.5, 0.1], [0.5, 0.0, 0.2], [0.1, 0.2, 0.0]])
_NAN = _M.copy()
_NAN[1, 2] = np.nan
_INF = _M.copy()
_INF[0, 1] = -np.inf

BAD_AFFINITY = {
    # name: (file name, bytes, words the one line must contain)
    "empty npy": ("a.npy", b"", ["empty"]),
    "empty npz": ("a.npz", b"", ["empty"]),
    "npy header cut": ("a.npy", _npy_bytes(_M)[:60], ["not a readable .npy"]),
    "npy data cut": ("a.npy", _npy_bytes(_M)[:-8], ["not a readable .npy"]),
    "npz cut": ("a.npz", _npz_bytes(matrix=_M)[:200], ["not a readable .npz"]),
    "npz corrupt": ("a.npz", _npz_bytes(matrix=_M)[:100] + b"\0" * 50
                    + _npz_bytes(matrix=_M)[150:], ["not a readable .npz"]),
    "npz without matrix": ("a.npz", _npz_bytes(weights=_M), ["'matrix'", "weights"]),
    "npy near max float": ("a.npy", _npy_bytes(np.full((3, 3), 1.7e308)), ["too large"]),
    "npz near max float": ("a.npz", _npz_bytes(matrix=_M * 1e200), ["too large"]),
    "csv near max float": ("a.csv", b"a,b\n0,1e300\n1e300,0\n", ["too large"]),
    "complex npy": ("a.npy", _npy_bytes(_M + 1j), ["complex"]),
    "complex npz": ("a.npz", _npz_bytes(matrix=_M.astype(np.complex64)), ["complex"]),
    "nan npy": ("a.npy", _npy_bytes(_NAN), ["nan"]),  # already held
    "inf npz": ("a.npz", _npz_bytes(matrix=_INF), ["inf"]),  # already held
    "non-square npy": ("a.npy", _npy_bytes(np.ones((2, 3))), ["square"]),  # already held
    "text npy": ("a.npy", _npy_bytes(np.array([["a", "b"], ["c", "d"]])), ["real numbers"]),
    "npz empty names": ("a.npz", _npz_bytes(matrix=_M, names=np.array([], dtype=str)),
                        ["0 names"]),
    "npz names not strings": ("a.npz", _npz_bytes(matrix=_M, names=np.arange(3)), ["names"]),
    "npz bad interval": ("a.npz", _npz_bytes(matrix=_M, lower=np.ones(2)), ["'lower'"]),
    "npy under npz name": ("a.npz", _npy_bytes(_M), [".npy"]),
}


@pytest.mark.parametrize("case", sorted(BAD_AFFINITY))
def test_bad_affinity_file_is_one_line_naming_it(cli, tmp_path, case):
    from taskpgm.affinity.io import load_affinity

    name, data, words = BAD_AFFINITY[case]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        load_affinity(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    code, out, err = cli("solve", "--affinity", path)
    _one_line_error(code, err, str(path), *words)
    assert "Aborted" not in err and "mixture" not in out


def test_values_just_below_the_limit_still_solve(cli, tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, _M * 1e149)
    code, _, err = cli("solve", "--affinity", path)
    assert code == 0, err


# -- 3. line numbers: a bad byte on a known line -------------------------------------

def _lines_with_bad_byte(n: int, bad_line: int) -> bytes:
    rows = [json.dumps({"prompt": f"question number {i} " + "padding " * 5,
                        "response": f"answer {i}"}).encode() + b"\n" for i in range(1, n + 1)]
    rows[bad_line - 1] = b'{"prompt": "caf\xe9 au lait", "response": "r"}\n'  # latin-1
    return b"".join(rows)


def test_jsonl_bad_byte_is_reported_on_its_own_line(tmp_path):
    from taskpgm.io import iter_jsonl

    path = tmp_path / "task.jsonl"
    path.write_bytes(_lines_with_bad_byte(600, 400))
    with pytest.raises(InputError) as info:
        list(iter_jsonl(path))
    assert str(info.value).startswith(f"{path}:400: not UTF-8"), str(info.value)
    assert "0xe9" in str(info.value)


def test_tasks_import_names_the_line_of_a_bad_byte(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.jsonl").write_bytes(_lines_with_bad_byte(500, 400))
    code, _, err = cli("tasks", "import", src, "--out", tmp_path / "pool")
    _one_line_error(code, err, f"{src / 'bad.jsonl'}:400:", "UTF-8")
    assert not (tmp_path / "pool").exists()


def test_jsonl_with_bom_and_crlf_reads(tmp_path):
    from taskpgm.io import iter_jsonl

    path = tmp_path / "t.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\r\n{"b": 2}\r\n')
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (3, {"b": 2})]


def test_json_bad_byte_names_its_line(tmp_path):
    from taskpgm.io import read_json

    path = tmp_path / "t.json"
    path.write_bytes(b'[\n  "a",\n  "b",\n  "\xff"\n]\n')
    with pytest.raises(InputError, match=r"t\.json:4: not UTF-8"):
        read_json(path)
    path.write_bytes(b'\xef\xbb\xbf[\n  "a",\n  "\xff"\n]\n')  # after a byte-order mark
    with pytest.raises(InputError, match=r"t\.json:3: not UTF-8 text \(byte 0xff at column 4\)"):
        read_json(path)


def test_csv_affinity_line_numbers_count_blank_lines_and_bad_bytes(tmp_path):
    from taskpgm.affinity.io import load_affinity

    path = tmp_path / "aff.csv"
    path.write_text("a,b,c\n\n0,1,2\n\n1,0,x\n2,1,0\n")
    with pytest.raises(InputError, match=r"aff\.csv:5: value 'x'"):
        load_affinity(path)
    path.write_bytes(b"a,b\n0,1\n\n1,\xff\n")
    with pytest.raises(InputError, match=r"aff\.csv:4: not UTF-8"):
        load_affinity(path)


# -- 4. symlinked task directories ---------------------------------------------------

@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlinked_task_directories_are_imported(cli, tmp_path):
    from taskpgm.tasks.pool import Pool

    real = tmp_path / "elsewhere"
    _jsonl(real / "qa" / "train.jsonl", 20, "qa")
    _jsonl(real / "math.jsonl", 20, "math")
    src = tmp_path / "src"
    _jsonl(src / "plain.jsonl", 20, "plain")
    (src / "qa").symlink_to(real / "qa", target_is_directory=True)
    (src / "more").symlink_to(real, target_is_directory=True)
    out = tmp_path / "pool"
    code, _, err = cli("tasks", "import", src, "--out", out)
    assert code == 0, err
    assert sorted(Pool.load(out).names) == ["more.math", "more.qa", "plain", "qa"]


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlink_loop_in_task_directory_is_one_line(cli, tmp_path):
    src = tmp_path / "src"
    _jsonl(src / "sub" / "a.jsonl", 20)
    (src / "sub" / "back").symlink_to(src, target_is_directory=True)
    code, _, err = cli("tasks", "import", src, "--out", tmp_path / "pool")
    _one_line_error(code, err, str(src / "sub" / "back"), "loop")


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_broken_symlinked_task_file_is_one_line(cli, tmp_path):
    src = tmp_path / "src"
    _jsonl(src / "a.jsonl", 20)
    (src / "b.jsonl").symlink_to(tmp_path / "gone.jsonl")
    code, _, err = cli("tasks", "import", src, "--out", tmp_path / "pool")
    _one_line_error(code, err, str(src / "b.jsonl"), "broken")


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlinked_source_directory_keeps_its_own_name(tmp_path):
    from taskpgm.tasks.importers import discover_tasks

    real = tmp_path / "real_dir"
    _jsonl(real / "train.jsonl", 5)
    link = tmp_path / "my_task"
    link.symlink_to(real, target_is_directory=True)
    assert [t.name for t in discover_tasks([link])] == ["my_task"]


# -- 5. --names files ----------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\n  \n\n", b"[]", b" [ ]\n"])
def test_empty_names_file_is_refused(cli, good_npy, tmp_path, content):
    from taskpgm.affinity.io import read_names

    names = tmp_path / "names.txt"
    names.write_bytes(content)
    with pytest.raises(InputError, match="empty"):
        read_names(names)
    code, out, err = cli("solve", "--affinity", good_npy, "--names", names)
    _one_line_error(code, err, str(names), "empty")
    assert "task0" not in out


def test_names_count_differs_from_matrix(cli, good_npy, tmp_path):
    # Already held for .npy; checked here for .npy and .npz with and without stored names.
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    code, _, err = cli("solve", "--affinity", good_npy, "--names", names)
    _one_line_error(code, err, str(good_npy), "2 names", "3x3")
    npz = tmp_path / "aff.npz"
    np.savez(npz, matrix=_M)
    code, _, err = cli("solve", "--affinity", npz, "--names", names)
    _one_line_error(code, err, str(npz), "2 names")


def test_names_file_not_utf8_or_with_blank_json_name(cli, good_npy, tmp_path):
    names = tmp_path / "names.txt"
    names.write_bytes(b"a\nb\n\xffc\n")
    code, _, err = cli("solve", "--affinity", good_npy, "--names", names)
    _one_line_error(code, err, f"{names}:3: not UTF-8")
    names.write_text('["a", " ", "c"]')
    code, _, err = cli("solve", "--affinity", good_npy, "--names", names)
    _one_line_error(code, err, str(names), "empty name")


def test_empty_names_list_given_to_the_library(good_npy):
    from taskpgm.affinity.io import load_affinity

    with pytest.raises(InputError, match="empty list of task names"):
        load_affinity(good_npy, [])


# -- 6. files where directories belong ----------------------------------------------

_TINY_RUN = """
run: {{dir: {run}, seed: 0}}
pool: {{source: synthetic, families: [reverse], scale: 0.1}}
model:
  tiny: {{n_layer: 1, n_embd: 32, n_head: 2, vocab_size: 128}}
experts: {{steps: 2, batch_size: 4}}
sample: {{budget: 20}}
train: {{steps: 2, batch_size: 4}}
evaluate: {{max_examples: 2}}
strategies:
- {{name: uniform, method: uniform}}
"""


def test_run_dir_that_is_a_regular_file(cli, tmp_path):
    # Already held in the working tree (a pipeline change refuses it); kept as a guard.
    run = tmp_path / "results"
    run.write_text("precious\n")
    config = tmp_path / "c.yaml"
    config.write_text(_TINY_RUN.format(run=run))
    code, _, err = cli("run", config, "--quiet")
    _one_line_error(code, err, str(run))
    assert run.read_text() == "precious\n"


def test_run_dir_below_a_regular_file(cli, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("precious\n")
    config = tmp_path / "c.yaml"
    config.write_text(_TINY_RUN.format(run=blocker / "run1"))
    code, _, err = cli("run", config, "--quiet")
    _one_line_error(code, err, str(blocker))
    assert blocker.read_text() == "precious\n"


@pytest.mark.parametrize("command", [["tasks", "synth"], ["tasks", "import", "SRC"]])
def test_out_that_is_a_file_is_refused_not_deleted(cli, tmp_path, command):
    src = _jsonl(tmp_path / "t.jsonl", 20)
    out = tmp_path / "pool"
    out.write_text("my notes\n")
    args = [str(src) if a == "SRC" else a for a in command]
    code, _, err = cli(*args, "--out", out)
    _one_line_error(code, err, str(out), "is a file")
    assert out.read_text() == "my notes\n"
    assert _leftovers(tmp_path) == []


def test_out_below_a_file_is_one_line(cli, tmp_path):
    blocker = tmp_path / "notes"
    blocker.write_text("my notes\n")
    code, _, err = cli("tasks", "synth", "--out", blocker / "pool")
    _one_line_error(code, err, str(blocker))
    assert blocker.read_text() == "my notes\n"


def test_atomic_dir_never_replaces_a_directory_it_did_not_write(tmp_path, capsys):
    """`tasks synth --out ~/somedir` must not swap away a directory of the user's."""
    from taskpgm.cli import run as cli_run

    mine = tmp_path / "mydir"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert cli_run(["tasks", "synth", "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "has no pool.json, so it was not written by taskpgm" in err
    assert (mine / "notes.txt").read_text() == "keep me"
    # An existing pool (pool.json) is what the command writes, so it may be replaced.
    assert cli_run(["tasks", "synth", "--out", str(tmp_path / "pool")]) == 0
    assert cli_run(["tasks", "synth", "--out", str(tmp_path / "pool"), "--seed", "1"]) == 0
