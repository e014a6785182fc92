"""Experts and score shards kept across pool changes, by identity.

The experts and scores stages fingerprint the whole pool, so any change to it re-runs
them; but they are *keyed* stages (:class:`taskpgm.pipeline.framework.Stage`): the
runner keeps their outputs and calls :func:`reconcile_experts` / :func:`reconcile_scores`
first, which

* keep every unit (``experts/<task>/``, ``scores/shards/<row>/<task>.parquet``) whose
  identity (:mod:`taskpgm.pipeline.identity`) is the one the new pool needs there;
* move a unit the new pool needs under another name (a renamed task): hard-linked into a
  staging directory first, so swapped names never overwrite each other;
* remove every other unit, but only files the run owns (``owns``: recorded in
  ``stages.json`` or written by the current attempt); a user's file is never touched.

The stage then fetches what it can from ``cache.dir`` and computes the rest. An expert
carries its identity in ``taskpgm_train.json`` (written with it, atomically). Shards are
too many for a file each: ``scores/identities.json`` holds the identity of every row (the
model that scored it) and column (the probe examples) plus the scoring settings, and a
shard's identity is derived from its row and column. It is rewritten only after every
shard that disagrees with the new one has been removed, so every shard present always
matches it, also after a kill at any moment.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskpgm.errors import InputError
from taskpgm.io import TEMP_TAG, atomic_write_json, read_json
from taskpgm.pipeline.identity import Identities, identities, shard_identity
from taskpgm.pipeline.ownership import is_temp

TRAIN_MARKER = "taskpgm_train.json"  # taskpgm.models.train (which imports torch)
INDEX = "identities.json"
ADAPTIVE_RECORD = "adaptive.json"  # taskpgm.pipeline.adaptive.RECORD (imports numpy)
Owns = Callable[[str], bool]  # path relative to the run directory -> the run's own file


@dataclass
class Counts:
    """What a keyed stage does with the units the run needs."""

    needed: int = 0
    kept: int = 0  # already in place
    moved: int = 0  # in the run under another name (a renamed task)
    cached: int = 0  # copied from cache.dir
    computed: int = 0  # trained or scored
    removed: int = 0  # no longer needed, or stale

    def describe(self, verb: str) -> str:
        reused = self.kept + self.moved
        return (f"{self.computed} to {verb}, {reused} reused from the run, {self.cached} "
                f"from the cache, {self.removed} removed")


# -- the run directory ------------------------------------------------------------------

def _staging(parent: Path) -> Path:
    """A temporary directory the runner removes if a kill leaves it behind."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".staging.{TEMP_TAG}", suffix=".tmp", dir=parent))


def _link_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=_link, symlinks=True)


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _remove_owned(path: Path, root: Path, owns: Owns) -> int:
    """Remove the run's own files at or under ``path`` and the directories left empty;
    returns how many files went."""
    if path.is_symlink() or path.is_file():
        if not path.is_symlink() and owns(path.relative_to(root).as_posix()):
            path.unlink()
            return 1
        return 0
    n = 0
    for dirpath, _, names in sorted(os.walk(path), key=lambda t: -len(t[0])):
        for name in names:
            f = Path(dirpath, name)
            if not f.is_symlink() and owns(f.relative_to(root).as_posix()):
                f.unlink()
                n += 1
        try:
            os.rmdir(dirpath)
        except OSError:
            pass  # something of the user's is left in it
    return n


def _refuse_foreign(targets: list[Path], root: Path, owns: Owns) -> None:
    """Where a unit will be written, nothing of the user's may be (the runner refuses
    such files before a stage runs from scratch; a resumed one meets them here)."""
    for t in targets:
        files = [t] if t.is_file() or t.is_symlink() else \
            [Path(p, n) for p, _, names in os.walk(t) for n in names]
        for f in files:
            if f.is_symlink() or not owns(f.relative_to(root).as_posix()):
                raise InputError(f"{f}: in a place this run must write, but not written by "
                                 "it (not in stages.json); move it away or choose another "
                                 "run.dir")


def _owned_tree(d: Path, root: Path, owns: Owns) -> bool:
    return all(not Path(p, n).is_symlink() and owns(Path(p, n).relative_to(root).as_posix())
               for p, _, names in os.walk(d) for n in names)


def _expert_identity(d: Path) -> str | None:
    try:
        info = read_json(d / TRAIN_MARKER)
    except InputError:
        return None
    return info.get("identity") if isinstance(info, dict) else None


def reconcile_experts(ctx: Any, owns: Owns, ids: Identities | None = None) -> Counts:
    """Keep, move and remove experts so each ``experts/<task>/`` present is the one the
    current pool needs there (see the module docstring)."""
    from taskpgm.models.train import relocate_expert

    ids = ids or identities(ctx)
    root, out = ctx.paths.root, ctx.paths.experts
    counts = Counts(needed=len(ids.experts))
    if not out.is_dir():
        return counts
    present = {d.name: _expert_identity(d) for d in sorted(out.iterdir())
               if d.is_dir() and not d.is_symlink() and not is_temp(d.name)
               and (d / TRAIN_MARKER).is_file() and _owned_tree(d, root, owns)}
    keep = {t for t, i in ids.experts.items() if present.get(t) == i}
    _refuse_foreign([out / t for t in ids.experts if t not in keep], root, owns)
    source: dict[str, str] = {}
    for name, ident in present.items():
        if ident is not None:
            source.setdefault(ident, name)
    moves = {t: source[i] for t, i in ids.experts.items() if t not in keep and i in source}
    staging = _staging(out)
    for t, src in moves.items():
        _link_tree(out / src, staging / t)
        relocate_expert(staging / t, ctx.base_dir, t, at=out / t)
    counts.removed = sum(1 for n in present if n not in keep and n not in moves.values())
    for entry in sorted(out.iterdir()):
        if entry.name not in keep and not is_temp(entry.name):
            _remove_owned(entry, root, owns)  # stale, unneeded, and experts.json
    for t in moves:
        os.rename(staging / t, out / t)
    shutil.rmtree(staging, ignore_errors=True)
    for t in keep:  # rewrites nothing unless the base model moved
        relocate_expert(out / t, ctx.base_dir, t)
    counts.kept, counts.moved = len(keep), len(moves)
    return counts


def reconcile_scores(ctx: Any, owns: Owns, ids: Identities | None = None) -> Counts:
    """Keep, move and remove shards so each one present is the one the current pool
    needs there, then record the new identities (see the module docstring)."""
    ids = ids or identities(ctx)
    root, scores = ctx.paths.root, ctx.paths.scores
    shards = scores / "shards"
    wanted = {p: ids.shard(*p) for p in ids.pairs}
    counts = Counts(needed=len(wanted))
    index = _read_index(scores / INDEX, root, owns)
    present: dict[tuple[str, str], str | None] = {}
    for row in sorted(shards.iterdir()) if shards.is_dir() else []:
        if not row.is_dir() or row.is_symlink() or is_temp(row.name):
            continue
        for f in sorted(row.iterdir()):
            if f.suffix == ".parquet" and f.is_file() and not f.is_symlink() and \
                    not is_temp(f.name) and owns(f.relative_to(root).as_posix()):
                present[(row.name, f.stem)] = _indexed(index, row.name, f.stem)
    keep = {p for p, i in wanted.items() if present.get(p) == i}
    _refuse_foreign([shards / r / f"{t}.parquet" for r, t in wanted if (r, t) not in keep],
                    root, owns)
    source: dict[str, tuple[str, str]] = {}
    for p, ident in present.items():
        if ident is not None:
            source.setdefault(ident, p)
    moves = {p: source[i] for p, i in wanted.items() if p not in keep and i in source}
    staging = _staging(scores)
    for (r, t), (sr, st) in moves.items():
        (staging / r).mkdir(exist_ok=True)
        _link(str(shards / sr / f"{st}.parquet"), str(staging / r / f"{t}.parquet"))
    counts.removed = sum(1 for p in present if p not in keep and p not in moves.values())
    for p in present:
        if p not in keep:
            _remove_owned(shards / p[0] / f"{p[1]}.parquet", root, owns)
    for name in ("scores.json", INDEX):  # rewritten by this run
        _remove_owned(scores / name, root, owns)
    if (scores / ADAPTIVE_RECORD).is_file() and not _adaptive_record_current(ctx, ids):
        _remove_owned(scores / ADAPTIVE_RECORD, root, owns)  # chosen afresh by the stage
    for row in sorted(shards.iterdir()) if shards.is_dir() else []:
        if row.is_dir() and not row.is_symlink() and not is_temp(row.name) and \
                not any(row.iterdir()):
            row.rmdir()
    # Every shard left matches the new identities: only now may the index say so.
    atomic_write_json(scores / INDEX, {"format": "taskpgm-shard-identities", "version": 1,
                                       "settings": ids.settings, "rows": ids.rows,
                                       "columns": ids.columns})
    for r, t in moves:
        (shards / r).mkdir(parents=True, exist_ok=True)
        os.rename(staging / r / f"{t}.parquet", shards / r / f"{t}.parquet")
    shutil.rmtree(staging, ignore_errors=True)
    counts.kept, counts.moved = len(keep), len(moves)
    return counts


def _adaptive_record_current(ctx: Any, ids: Identities) -> bool:
    from taskpgm.pipeline.adaptive import recorded_second_round

    s = ctx.cfg.scoring
    return s.fraction < 1 and s.sampling == "adaptive" and \
        recorded_second_round(ctx, ids) is not None


def _read_index(path: Path, root: Path, owns: Owns) -> dict[str, Any] | None:
    if not path.is_file() or not owns(path.relative_to(root).as_posix()):
        return None
    try:
        raw = read_json(path)
    except InputError:
        return None
    ok = isinstance(raw, dict) and isinstance(raw.get("rows"), dict) and \
        isinstance(raw.get("columns"), dict) and isinstance(raw.get("settings"), str)
    return raw if ok else None


def _indexed(index: dict[str, Any] | None, row: str, task: str) -> str | None:
    if index is None or row not in index["rows"] or task not in index["columns"]:
        return None  # of unknown make: never reused
    return shard_identity(index["rows"][row], index["columns"][task], index["settings"])


# -- cache.dir ----------------------------------------------------------------------------

def _cache(ctx: Any):
    from taskpgm.pipeline.cache import Cache

    return Cache(ctx.cfg.cache.dir) if ctx.cfg.cache.dir is not None else None


def fetch_experts(ctx: Any, ids: Identities) -> int:
    """Copy from the cache every needed expert the run lacks; returns how many."""
    from taskpgm.io import atomic_dir
    from taskpgm.models.train import is_finished, relocate_expert

    cache, out, n = _cache(ctx), ctx.paths.experts, 0
    for task, ident in ids.experts.items() if cache is not None else ():
        target = out / task
        if is_finished(target) or target.exists() or not cache.has("experts", ident):
            continue
        try:
            with atomic_dir(target) as tmp:
                if not cache.fetch("experts", ident, tmp):
                    raise _Miss  # atomic_dir removes its temporary directory
                relocate_expert(tmp, ctx.base_dir, task, at=target)
            n += 1
        except _Miss:
            pass  # damaged or gone: trained below
    return n


class _Miss(Exception):
    pass


def store_experts(ctx: Any, ids: Identities) -> None:
    cache, out = _cache(ctx), ctx.paths.experts
    for task, ident in ids.experts.items() if cache is not None else ():
        d = out / task
        if (d / TRAIN_MARKER).is_file() and not cache.has("experts", ident):
            cache.store("experts", ident, {p.relative_to(d).as_posix(): p
                                           for p in sorted(d.rglob("*")) if p.is_file()})


def fetch_shards(ctx: Any, ids: Identities) -> int:
    from taskpgm.scores import shard_path

    cache, scores, n = _cache(ctx), ctx.paths.scores, 0
    if cache is None:
        return 0
    todo = [p for p in ids.pairs if not shard_path(scores, *p).is_file()
            and cache.has("shards", ids.shard(*p))]
    if not todo:
        return 0
    staging = _staging(scores)
    try:
        for r, t in todo:
            if cache.fetch("shards", ids.shard(r, t), staging):
                shard_path(scores, r, t).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / "shard.parquet", shard_path(scores, r, t))
                n += 1
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return n


def store_shards(ctx: Any, ids: Identities) -> None:
    from taskpgm.scores import shard_path

    cache = _cache(ctx)
    for r, t in ids.pairs if cache is not None else ():
        ident, path = ids.shard(r, t), shard_path(ctx.paths.scores, r, t)
        if path.is_file() and not cache.has("shards", ident):
            cache.store("shards", ident, {"shard.parquet": path})


# -- the plan -----------------------------------------------------------------------------

def _base_known(ctx: Any, upstream: set[str]) -> bool:
    """Whether the base model and pool the stage will read are already what they will
    be: a pool or tiny base the run (re)builds first is not."""
    if "pool" in upstream and ctx.cfg.pool.source != "dir":
        return False
    if "base" in upstream and ctx.cfg.model.base == "tiny":
        return False
    return ctx.base_dir.is_dir() and ctx.pool_dir.is_dir()


def _plan_identities(ctx: Any, upstream: set[str], units: str) -> Identities | str:
    """The identities a plan can count against, or the line to print instead."""
    from taskpgm.errors import TaskPGMError

    try:
        if not _base_known(ctx, upstream):
            return f"{units} reused are counted once the pool and base model are built"
        return identities(ctx)
    except (TaskPGMError, OSError):
        return ""


def _count(present: dict, needed: dict, cache: Any, kind: str) -> Counts:
    """How the units ``needed`` (key -> identity) will be had, given those ``present``
    in the run (key -> identity): kept in place, moved from another key, fetched from
    the cache, or computed; and how many present ones nothing needs any more."""
    c = Counts(needed=len(needed))
    have = set(present.values())
    for key, ident in needed.items():
        if present.get(key) == ident:
            c.kept += 1
        elif ident in have:
            c.moved += 1
        elif cache is not None and cache.has(kind, ident):
            c.cached += 1
        else:
            c.computed += 1
    wanted = set(needed.values())
    c.removed = sum(1 for i in present.values() if i not in wanted)
    return c


def describe_experts(ctx: Any, upstream: set[str]) -> str:
    ids = _plan_identities(ctx, upstream, "experts")
    if isinstance(ids, str):
        return ids
    out, cache = ctx.paths.experts, _cache(ctx)
    present = {d.name: _expert_identity(d) for d in (out.iterdir() if out.is_dir() else [])
               if (d / TRAIN_MARKER).is_file()}
    return "experts: " + _count(present, ids.experts, cache, "experts").describe("train")


def describe_scores(ctx: Any, upstream: set[str]) -> str:
    ids = _plan_identities(ctx, upstream, "shards")
    if isinstance(ids, str):
        return ids
    scores, cache = ctx.paths.scores, _cache(ctx)
    index = _read_index(scores / INDEX, ctx.paths.root, lambda _: True)
    shards = scores / "shards"
    present = {(row.name, f.stem): _indexed(index, row.name, f.stem)
               for row in (shards.iterdir() if shards.is_dir() else []) if row.is_dir()
               for f in row.glob("*.parquet")}
    needed = {p: ids.shard(*p) for p in ids.pairs}
    line = "shards: " + _count(present, needed, cache, "shards").describe("score")
    s = ctx.cfg.scoring
    if s.fraction < 1 and s.sampling == "adaptive":
        from taskpgm.pipeline.adaptive import second_round_pending

        if pending := second_round_pending(ctx, ids):
            # Which pairs depends on the first round's scores: only their number is known.
            line += (f"; then {pending} adaptive second-round pairs, chosen when the "
                     "first round is scored")
    return line
