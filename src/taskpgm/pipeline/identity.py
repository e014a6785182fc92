"""What an expert and a score shard are made of, as one digest each.

An expert's *identity* digests everything its weights depend on: the base model's bytes,
the ``experts`` settings and prompt format, the run seed and the digest of its task's
training examples (its seed is derived from those two, not from the task's name or place
in the pool: :func:`taskpgm.models.train.expert_seed`). A shard's identity digests the
identity of the model that scored it (an expert, or the base model for the ``base``
row), the digest of the scored task's probe examples and the scoring settings that
change its numbers.

Task names are in neither, so a renamed task keeps its expert and shards, and a pool that
gains or loses tasks changes no other task's identities; everything that changes a
value is in them, so an edited task changes exactly its expert and the shards that
involve it. The experts and scores stages keep, move and fetch units by these digests
(:mod:`taskpgm.pipeline.reuse`, :mod:`taskpgm.pipeline.cache`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskpgm.errors import TaskPGMError
from taskpgm.io import sha256_file
from taskpgm.tasks.digest import examples_digest

# Bumped when what an identity covers changes (old units are then never reused).
IDENTITY_VERSION = 1
BASE_ROW = "base"  # taskpgm.models.scoring.BASE_EXPERT (that module imports torch)


def digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# (resolved path, size, mtime, ctime, inode) -> sha256: a base model is hashed once per
# process (a plan and the run that follows it, or several runs in one test session), and
# files of at least PERSIST_MIN_BYTES once per machine: their digests are kept in
# digests.json under taskpgm.io.user_cache_dir() ($TASKPGM_DIGESTS names another file),
# as git's index keeps file stats, so a multi-GB base is not re-read by every run. ctime is in the key because no tool can set
# it back: a file rewritten in place with its size and mtime restored is still re-hashed.
_FILE_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}
PERSIST_MIN_BYTES = 1 << 20
_PERSIST_MAX = 20_000  # entries kept in digests.json (the most recent)


def _persisted_path() -> Path:
    from taskpgm.io import user_cache_dir

    if os.environ.get("TASKPGM_DIGESTS"):
        return Path(os.environ["TASKPGM_DIGESTS"])
    return user_cache_dir() / "digests.json"


def _persisted() -> dict[str, str]:
    try:
        raw = json.loads(_persisted_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: only a hint, recompute
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)
            and len(v) == 64} if isinstance(raw, dict) else {}


def _persist(known: dict[str, str], key: str, value: str) -> None:
    from taskpgm.io import atomic_write_json

    known.pop(key, None)
    known[key] = value  # most recent last
    try:
        _persisted_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(_persisted_path(), dict(list(known.items())[-_PERSIST_MAX:]))
    except (OSError, TaskPGMError):
        return  # a hint that cannot be kept (disk full, read-only home) is dropped


def _file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key in _FILE_DIGESTS:
        return _FILE_DIGESTS[key]
    stored = "|".join(map(str, key))
    known = _persisted() if st.st_size >= PERSIST_MIN_BYTES else None
    value = known.get(stored) if known is not None else None
    if value is None:
        value = sha256_file(path)
        if known is not None:
            _persist(known, stored, value)
    _FILE_DIGESTS[key] = value
    return value


def model_digest(model_dir: Path) -> str:
    """Digest of every file of a model directory (relative names and contents): the base
    model's identity, however it was made (built here or given by ``model.base``)."""
    files = sorted(Path(d, n) for d, _, names in os.walk(model_dir, followlinks=True)
                   for n in names if not n.startswith("."))
    return digest([[f.relative_to(model_dir).as_posix(), _file_digest(f)] for f in files
                   if f.is_file()])


@dataclass
class Identities:
    """Identities of every expert and shard a run needs."""

    base: str
    experts: dict[str, str]  # training task -> expert identity
    columns: dict[str, str]  # every task -> digest of its probe examples (ids included)
    settings: str  # scoring settings that change a shard's numbers
    pairs: list[tuple[str, str]]  # the (row, task) shards the run needs
    rows: dict[str, str] = field(init=False)  # row (expert name, or "base") -> identity

    def __post_init__(self) -> None:
        self.rows = {**self.experts, BASE_ROW: digest({"base-model": self.base})}

    def shard(self, row: str, task: str) -> str:
        return shard_identity(self.rows[row], self.columns[task], self.settings)


def shard_identity(row: str, column: str, settings: str) -> str:
    return digest({"v": IDENTITY_VERSION, "model": row, "probe": column, "scoring": settings})


def identities(ctx: Any, base: str | None = None) -> Identities:
    """The identities for ``ctx`` (a PipelineContext) whose pool is built. ``base``: the
    base model's digest if known (default: hash ``ctx.base_dir``)."""
    from taskpgm.config import expert_settings
    from taskpgm.pipeline.stages import MODEL_CODE_VERSION, unscored_pairs

    cfg = ctx.cfg
    pool = ctx.pool()
    base = base if base is not None else model_digest(ctx.base_dir)
    train = ctx.train_task_names()
    # The trainer's settings the config can change (not where it runs: experts.executor
    # trains the same bytes), the prompt format, and the inputs of each expert's seed
    # (run seed, examples digest); the trainer's fixed constants are covered by
    # MODEL_CODE_VERSION.
    common = {"v": IDENTITY_VERSION, "code": MODEL_CODE_VERSION, "base": base,
              "experts": expert_settings(cfg), "seed": cfg.run.seed,
              "format": {"prompt_format": cfg.model.prompt_format,
                         "separator": cfg.model.separator}}
    experts = {t: digest({**common, "examples": examples_digest(pool.examples(t, "train"),
                                                                ids=False)})
               for t in train}
    columns = {t: examples_digest(pool.examples(t, "probe"), ids=True) for t in pool.names}
    # What stage_scores passes as ScoreSettings: topk and the prompt format (append_eos
    # and max_length are fixed there); and the batching, which changes numbers by float
    # noise only, but a reused shard must be the bytes a fresh run would write.
    settings = digest({"code": MODEL_CODE_VERSION, "topk": cfg.scoring.topk,
                       "batch_size": cfg.scoring.batch_size,
                       "max_batch_tokens": cfg.scoring.max_batch_tokens,
                       "prompt_format": cfg.model.prompt_format,
                       "separator": cfg.model.separator})
    ids = Identities(base, experts, columns, settings, [])
    # Adaptive scoring's second round is recorded against the first round's shard
    # identities, so the pairs are known only once the rest is.
    skip = set(unscored_pairs(ctx, ids))
    ids.pairs = [(r, t) for r in [*train, BASE_ROW] for t in pool.names if (r, t) not in skip]
    return ids
