"""Per-task statistics of a pool (streamed, one task file at a time)."""

from __future__ import annotations

from dataclasses import dataclass

from taskpgm.tasks.pool import SPLITS, Pool


@dataclass(frozen=True)
class TaskStats:
    name: str
    role: str
    family: str | None
    kind: str
    counts: dict[str, int]
    prompt_chars: float
    response_chars: float
    prompt_words: float
    response_words: float


def pool_stats(pool: Pool) -> list[TaskStats]:
    rows = []
    for info in pool.tasks:
        n = pc = rc = pw = rw = 0
        counts = {}
        for split in SPLITS:
            k = 0
            for ex in pool.iter_examples(info.name, split):
                k += 1
                pc += len(ex.prompt)
                rc += len(ex.response)
                pw += len(ex.prompt.split())
                rw += len(ex.response.split())
            counts[split] = k
            n += k
        d = max(n, 1)
        rows.append(TaskStats(info.name, info.role, info.family, info.kind, counts,
                              pc / d, rc / d, pw / d, rw / d))
    return rows
