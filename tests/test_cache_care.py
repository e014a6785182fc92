"""A shared cache.dir over time: read-only caches, usage stamps, pruning (issue 12)."""

from __future__ import annotations

import errno
import os
import time

import pytest

from taskpgm.pipeline import cache as cache_mod
from taskpgm.pipeline.cache import Cache

A, B = "ab" * 32, "cd" * 32


def _file(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _age(path, days):
    t = time.time() - days * 86400.0
    os.utime(path, (t, t))


def test_an_unwritable_cache_is_read_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    cache = Cache(tmp_path / "cache")
    cache.store("shards", A, {"shard.parquet": _file(tmp_path, "a", b"alpha")})

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", str(tmp_path / "cache"))

    monkeypatch.setattr(cache_mod.tempfile, "mkdtemp", refuse)
    cache.store("shards", B, {"shard.parquet": _file(tmp_path, "b", b"beta")})
    cache.store("shards", "ef" * 32, {"shard.parquet": _file(tmp_path, "c", b"gamma")})
    err = capsys.readouterr().err
    assert err.count("warning: cache") == 1 and "Read-only file system" in err
    assert cache.read_only is not None and not cache.has("shards", B)
    dest = tmp_path / "dest"
    dest.mkdir()
    assert cache.fetch("shards", A, dest) and (dest / "shard.parquet").read_bytes() == b"alpha"


def test_another_write_error_is_not_swallowed(tmp_path, monkeypatch):
    cache = Cache(tmp_path / "cache")

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(cache_mod.tempfile, "mkdtemp", broken)
    with pytest.raises(OSError, match="Input/output"):
        cache.store("shards", A, {"shard.parquet": _file(tmp_path, "a", b"alpha")})


def test_a_fetch_marks_the_entry_used(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.store("shards", A, {"shard.parquet": _file(tmp_path, "a", b"alpha")})
    listing = cache.entry("shards", A) / "entry.json"
    _age(listing, 40)
    assert cache.survey(unused_days=30).unused
    dest = tmp_path / "dest"
    dest.mkdir()
    assert cache.fetch("shards", A, dest)
    assert not cache.survey(unused_days=30).unused


def _populated(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.store("shards", A, {"shard.parquet": _file(tmp_path, "a", b"alpha")})
    cache.store("experts", B, {"config.json": _file(tmp_path, "b", b"{}")})
    _age(cache.entry("shards", A) / "entry.json", 40)  # unused for 40 days
    parent = cache.entry("shards", A).parent
    stale = parent / f".{'ee' * 32}.taskpgm-x1.tmp"  # a killed writer's, 7 hours old
    stale.mkdir()
    (stale / "part").write_bytes(b"half")
    t = time.time() - 7 * 3600
    os.utime(stale, (t, t))
    fresh = parent / f".{'ff' * 32}.taskpgm-x2.tmp"  # a writer at work right now
    fresh.mkdir()
    return cache, stale, fresh


def test_prune_removes_unused_entries_and_killed_writers_leftovers_only(tmp_path, cli):
    cache, stale, fresh = _populated(tmp_path)
    root = tmp_path / "cache"
    code, out, _ = cli("cache", "prune", root, "--unused-days", "30", "--dry-run")
    assert code == 0 and "would remove 1 entries" in out and "1 leftover" in out
    assert cache.has("shards", A) and stale.exists()
    code, out, _ = cli("cache", "prune", root, "--unused-days", "30")
    assert code == 0 and "removed 1 entries" in out and "kept 1 entries" in out
    assert not cache.has("shards", A) and cache.has("experts", B)
    assert not stale.exists() and fresh.exists()
    assert not any(p.name.endswith(".old") for p in root.rglob("*"))
    code, out, _ = cli("cache", "info", root)
    assert code == 0 and "experts: 1 entries" in out and "shards: 0 entries" in out


@pytest.mark.parametrize("args, message", [
    (["prune", "{missing}", "--unused-days", "3"], "cache directory not found"),
    (["prune", "{plain}", "--unused-days", "3"], "not a taskpgm cache"),
    (["prune", "{cache}", "--unused-days", "-1"], "--unused-days must be"),
    (["prune", "{cache}", "--unused-days", "nan"], "--unused-days must be"),
    (["info", "{missing}"], "cache directory not found"),
])
def test_cache_commands_refuse_bad_input_in_one_line(tmp_path, cli, args, message):
    cache, _, _ = _populated(tmp_path)
    (tmp_path / "plain").mkdir()
    paths = {"missing": tmp_path / "nope", "plain": tmp_path / "plain",
             "cache": tmp_path / "cache"}
    code, _, err = cli("cache", *[a.format(**paths) for a in args])
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert cache.has("shards", A)  # nothing removed
