"""The score store: what every expert assigned to every task's probe examples.

Layout of a scores directory (written by ``taskpgm score``, read by ``taskpgm
affinity``)::

    SCORES/scores.json                       # ScoresManifest (experts, tasks, top-k size)
    SCORES/shards/<expert>/<task>.parquet    # one shard per (expert, task)

Each shard has one row per probe example of ``task``, in the pool's probe order:

============== ======================= =============================================
column          type                   meaning
============== ======================= =============================================
example_id      string                 the example's id in the pool
logprob         float64                sum over response tokens of log p(token|prefix)
n_tokens        int32                  number of response tokens scored
topk_ids        list<list<int32>>      optional: per response position, top-k token ids
topk_logprobs   list<list<float32>>    optional: their log-probabilities
============== ======================= =============================================

This module needs only numpy and pyarrow, so affinity can be computed from scores
without torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from taskpgm.errors import InputError
from taskpgm.io import atomic_path, atomic_write_json, read_json_model

SCORES_MANIFEST = "scores.json"


class ScoresManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = "taskpgm-scores"
    version: int = 1
    experts: list[str]
    tasks: list[str]
    topk: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)


@dataclass
class Shard:
    """Scores of one expert on one task's probe examples."""

    example_ids: list[str]
    logprob: np.ndarray  # float64 [m]
    n_tokens: np.ndarray  # int32 [m]
    topk_ids: list[np.ndarray] | None = None  # per example: int32 [positions, k]
    topk_logprobs: list[np.ndarray] | None = None  # per example: float32 [positions, k]

    def __len__(self) -> int:
        return len(self.example_ids)


def shard_path(root: str | Path, expert: str, task: str) -> Path:
    return Path(root) / "shards" / expert / f"{task}.parquet"


def write_shard(path: str | Path, shard: Shard) -> None:
    """Write one shard atomically (a killed writer leaves no partial shard)."""
    cols: dict[str, pa.Array] = {
        "example_id": pa.array(shard.example_ids, type=pa.string()),
        "logprob": pa.array(np.asarray(shard.logprob, dtype=np.float64)),
        "n_tokens": pa.array(np.asarray(shard.n_tokens, dtype=np.int32)),
    }
    if shard.topk_ids is not None and shard.topk_logprobs is not None:
        cols["topk_ids"] = pa.array(
            [np.asarray(a, dtype=np.int32).tolist() for a in shard.topk_ids],
            type=pa.list_(pa.list_(pa.int32())),
        )
        cols["topk_logprobs"] = pa.array(
            [np.asarray(a, dtype=np.float32).tolist() for a in shard.topk_logprobs],
            type=pa.list_(pa.list_(pa.float32())),
        )
    table = pa.table(cols)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_shard(path: str | Path) -> Shard:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: score shard not found")
    try:
        # ParquetFile.read, not read_table: read_table sets up a dataset scan per call,
        # 6x the time of the read itself on a shard of a few rows (90k shards: minutes).
        with pq.ParquetFile(path) as pf:
            table = pf.read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: unreadable Parquet shard ({exc})") from None
    for col in ("example_id", "logprob", "n_tokens"):
        if col not in table.column_names:
            raise InputError(f"{path}: missing column {col!r}")
    topk_ids = topk_lp = None
    if "topk_ids" in table.column_names and "topk_logprobs" in table.column_names:
        topk_ids = [np.asarray(x, dtype=np.int32) for x in table["topk_ids"].to_pylist()]
        topk_lp = [np.asarray(x, dtype=np.float32) for x in table["topk_logprobs"].to_pylist()]
    return Shard(
        example_ids=[str(x) for x in table["example_id"].to_pylist()],
        logprob=table["logprob"].to_numpy().astype(np.float64),
        n_tokens=table["n_tokens"].to_numpy().astype(np.int32),
        topk_ids=topk_ids,
        topk_logprobs=topk_lp,
    )


def write_manifest(root: str | Path, manifest: ScoresManifest) -> None:
    atomic_write_json(Path(root) / SCORES_MANIFEST, manifest.model_dump(mode="json"))


class ScoreTable:
    """All (expert, task) shards, read when first used, exposed as numpy arrays.

    Experts are named after the task they were trained on (plus e.g. ``base`` for the
    untuned model), so ``experts`` and ``tasks`` usually coincide.
    """

    def __init__(self, experts: list[str], tasks: list[str],
                 shards: dict[tuple[str, str], Shard | Path],
                 root: Path | None = None, manifest: ScoresManifest | None = None):
        self.experts = list(experts)
        self.tasks = list(tasks)
        self._shards = shards
        self.root = root
        self.manifest = manifest

    # -- construction ---------------------------------------------------------------
    @classmethod
    def load(cls, root: str | Path) -> ScoreTable:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: scores directory not found")
        manifest = read_json_model(root / SCORES_MANIFEST, ScoresManifest)
        # The paths only: a shard is read when first used (a stage that needs a few rows,
        # or none, does not read 90k files).
        shards: dict[tuple[str, str], Shard | Path] = {}
        for e in manifest.experts:
            for t in manifest.tasks:
                p = shard_path(root, e, t)
                if p.is_file():
                    shards[(e, t)] = p
        return cls(manifest.experts, manifest.tasks, shards, root, manifest)

    @classmethod
    def from_arrays(
        cls,
        experts: list[str],
        tasks: list[str],
        logprob: dict[tuple[str, str], np.ndarray],
        n_tokens: dict[str, np.ndarray] | None = None,
    ) -> ScoreTable:
        """Build an in-memory table (tests, synthetic data, users' own scores)."""
        shards = {}
        for (e, t), lp in logprob.items():
            lp = np.asarray(lp, dtype=np.float64)
            nt = (
                np.asarray(n_tokens[t], dtype=np.int32)
                if n_tokens is not None
                else np.ones(len(lp), dtype=np.int32)
            )
            ids = [str(i) for i in range(len(lp))]
            shards[(e, t)] = Shard(ids, lp, nt)
        return cls(experts, tasks, shards)

    # -- access -----------------------------------------------------------------------
    def has(self, expert: str, task: str) -> bool:
        return (expert, task) in self._shards

    def shard(self, expert: str, task: str) -> Shard:
        try:
            got = self._shards[(expert, task)]
        except KeyError:
            raise InputError(f"no scores for expert {expert!r} on task {task!r}") from None
        if isinstance(got, Path):
            got = self._shards[(expert, task)] = read_shard(got)
        return got

    def require(self, experts: Iterable[str] = (), tasks: Iterable[str] = (),
                what: str = "task") -> None:
        """One clear error for the first expert or task that has no scores."""
        for e in experts:
            if e not in self.experts:
                raise InputError(f"expert {e!r} has no scores (scored experts: "
                                 f"{len(self.experts)})")
        for t in tasks:
            if t not in self.tasks:
                raise InputError(f"{what} {t!r} has no scores (scored tasks: {len(self.tasks)})")

    def without(self, pairs: Iterable[tuple[str, str]]) -> ScoreTable:
        """The same table with these (expert, task) pairs unscored (shards already read
        are shared, not copied): what scoring only the rest would have produced."""
        drop = set(pairs)
        kept = {k: v for k, v in self._shards.items() if k not in drop}
        return ScoreTable(self.experts, self.tasks, kept, self.root, self.manifest)

    def missing_pairs(self) -> list[tuple[str, str]]:
        return [(e, t) for e in self.experts for t in self.tasks if (e, t) not in self._shards]

    def matrix(self, task: str, experts: Iterable[str] | None = None) -> np.ndarray:
        """Log-likelihoods of ``task``'s probe examples, shape ``[n_experts, m]``."""
        experts = list(experts) if experts is not None else self.experts
        rows = [self.shard(e, task) for e in experts]
        ref = rows[0].example_ids
        for e, s in zip(experts, rows, strict=True):
            if s.example_ids != ref:
                raise InputError(
                    f"expert {e!r} scored different probe examples of task {task!r} "
                    f"than expert {experts[0]!r}"
                )
        return np.stack([s.logprob for s in rows])

    def n_tokens(self, task: str) -> np.ndarray:
        for e in self.experts:
            if (e, task) in self._shards:
                return self.shard(e, task).n_tokens
        raise InputError(f"no scores for task {task!r}")
