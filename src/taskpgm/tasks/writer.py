"""Write a task pool to disk in one piece.

The whole pool directory is built beside its destination and renamed into place, so a
failed import (a bad row in the tenth file) leaves no half-written pool behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskpgm.errors import InputError
from taskpgm.io import atomic_dir
from taskpgm.tasks.pool import (
    SPLITS,
    Example,
    Pool,
    PoolManifest,
    TaskInfo,
    check_task_name,
    write_manifest,
)


@dataclass
class TaskData:
    """One task's examples per split, with its pool.json entry (counts are filled in)."""

    info: TaskInfo
    splits: dict[str, list[Example]] = field(default_factory=dict)


def example_line(ex: Example) -> str:
    return json.dumps(ex.to_record(), ensure_ascii=False, sort_keys=True) + "\n"


def write_pool(
    out: str | Path, tasks: Iterable[TaskData], metadata: dict[str, Any] | None = None
) -> Pool:
    """Write ``tasks`` as a pool at ``out`` (replacing any pool there only on success)."""
    out = Path(out)
    infos: list[TaskInfo] = []
    seen: dict[str, str] = {}
    with atomic_dir(out, replaces="pool.json") as tmp:
        for td in tasks:
            name = check_task_name(td.info.name)
            source = td.info.source
            if name in seen:
                raise InputError(
                    f"duplicate task name {name!r} (from {seen[name]} and {source})"
                )
            seen[name] = source
            unknown = set(td.splits) - set(SPLITS)
            if unknown:
                raise InputError(f"task {name!r}: unknown split {min(unknown)!r}")
            usable = "train" if td.info.role == "train" else None
            if usable and not td.splits.get("train"):
                raise InputError(f"task {name!r} ({source}) has no training examples")
            if not any(td.splits.get(s) for s in SPLITS):
                raise InputError(f"task {name!r} ({source}) has no examples")
            counts: dict[str, int] = {}
            ids: set[str] = set()
            for split in SPLITS:
                examples = td.splits.get(split) or []
                counts[split] = len(examples)
                if not examples:
                    continue
                for ex in examples:
                    if ex.id in ids:
                        raise InputError(f"task {name!r} ({source}): duplicate example id {ex.id!r}")
                    ids.add(ex.id)
                path = tmp / "tasks" / name / f"{split}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "w", encoding="utf-8") as fh:
                    for ex in examples:
                        fh.write(example_line(ex))
            infos.append(td.info.model_copy(update={"counts": counts}))
        if not infos:
            raise InputError("no tasks to write")
        write_manifest(tmp, PoolManifest(tasks=infos, metadata=dict(metadata or {})))
    return Pool.load(out)
