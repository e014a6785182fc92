"""Materialise a mixture: exactly N training examples drawn from a pool.

Streaming by design, so a 1,000,000-example sample from a 3,000,000-example pool never
holds the pool in memory:

1. Allocation: integer counts per task summing to exactly N (largest remainder, or a
   seeded multinomial draw).
2. Plan: per task, a list of line indices: fresh permutations of the task's train split,
   one per epoch, cut at the task's count (without replacement until exhausted).
3. Extract: each task file is read once; the chosen lines are written, in plan order,
   to a per-task part file. Only one task's chosen lines are in memory at a time.
4. Interleave: a seeded shuffle of task labels (N small integers) says which part file
   the next output line comes from. Exports (taskpgm.export) read the part files; those
   that keep the sample's order follow the same labels.

Everything is written inside a temporary directory that replaces ``out`` at the end,
so a failure leaves nothing half-written; the same seed gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from taskpgm.choices import ALLOCATIONS, EXPORT_FORMATS
from taskpgm.errors import InputError
from taskpgm.io import atomic_dir, atomic_write_json, sha256_file
from taskpgm.mixture.record import Mixture
from taskpgm.models.prompt_format import DEFAULT_SEPARATOR
from taskpgm.portable import portable_path
from taskpgm.tasks.pool import Example, Pool
from taskpgm.tasks.splits import stable_hash

FORMATS = EXPORT_FORMATS
SAMPLE_FORMAT = "taskpgm-sample"


class TaskSample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str
    weight: float
    count: int
    available: int
    epochs: int


class SampleManifest(BaseModel):
    """``manifest.json`` of a materialised mixture."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["taskpgm-sample"] = SAMPLE_FORMAT
    version: int = 1
    budget: int
    seed: int
    allocation: str
    max_epochs: int | None
    export_format: str
    pool: str
    pool_sha256: str
    mixture_method: str
    mixture_sha256: str
    tasks: list[TaskSample]
    files: list[str]

    def counts(self) -> dict[str, int]:
        return {t.task: t.count for t in self.tasks if t.count > 0}


def check_seed(seed: object) -> None:
    """Seeds are non-negative integers (numpy's generators refuse anything else)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")


def allocate(
    weights: np.ndarray, budget: int, method: str = "largest_remainder", seed: int = 0
) -> np.ndarray:
    """Integer counts summing exactly to ``budget``, proportional to ``weights``."""
    w = np.asarray(weights, dtype=np.float64)
    if budget < 0:
        raise InputError(f"budget must be a positive number of examples, got {budget}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError("mixture weights must be finite, non-negative and not all zero")
    w = w / w.sum()
    if method == "largest_remainder":
        # Rounding the quotas first makes weights that differ only by float noise
        # (uniform from two different solvers, say) give exactly the same counts.
        quota = np.round(w * budget, 9)
        counts = np.floor(quota).astype(np.int64)
        short = budget - int(counts.sum())
        # Largest fractional part first; ties go to the earlier task (stable sort).
        order = np.argsort(-(quota - counts), kind="stable")
        counts[order[:short]] += 1
        return counts
    if method == "multinomial":
        check_seed(seed)
        rng = np.random.default_rng([seed, 0x5A11])
        return rng.multinomial(budget, w).astype(np.int64)
    raise InputError(f"unknown allocation {method!r} (use {' or '.join(ALLOCATIONS)})")


def epoch_plan(count: int, available: int, rng: np.random.Generator) -> np.ndarray:
    """Line indices: fresh permutations of ``range(available)`` until ``count`` are taken."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    epochs = math.ceil(count / available)
    parts = [rng.permutation(available) for _ in range(epochs)]
    return np.concatenate(parts)[:count].astype(np.int64)


def _task_rng(seed: int, task: str) -> np.random.Generator:
    # Keyed by the task's name, not its position, so adding a task changes no other task.
    return np.random.default_rng([seed, stable_hash(task, "sample") >> 1])


def output_record(task: str, ex: Example, style: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"task": task, "id": ex.id}
    if style == "messages":
        rec["messages"] = (
            [dict(m) for m in ex.messages]
            if ex.messages is not None
            else [{"role": "user", "content": ex.prompt},
                  {"role": "assistant", "content": ex.response}]
        )
    else:
        rec["prompt"], rec["response"] = ex.prompt, ex.response
        if style == "full" and ex.messages is not None:
            # Exports (taskpgm.export) need the conversation; train.jsonl drops it again.
            rec["messages"] = [dict(m) for m in ex.messages]
    if ex.options is not None:
        rec["options"], rec["answer"] = list(ex.options), ex.answer
    return rec


def _extract_task(
    pool: Pool, task: str, plan: np.ndarray, dest: Path, style: str
) -> None:
    """Stream the task's train file once; write its chosen lines in plan order."""
    path = pool.split_path(task, "train")
    wanted = set(plan.tolist())
    chosen: dict[int, str] = {}
    record = -1
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            record += 1
            if record not in wanted:
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(raw, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object")
            ex = Example.from_record(raw, f"{path}:{lineno}")
            chosen[record] = (
                json.dumps(output_record(task, ex, style), ensure_ascii=False, sort_keys=True)
                + "\n"
            )
    if len(chosen) < len(wanted):
        raise InputError(
            f"{path}: has {record + 1} examples but pool.json counts more for task {task!r}"
        )
    with open(dest, "w", encoding="utf-8") as out:
        out.writelines(chosen[i] for i in plan.tolist())


def mixing_order(counts: np.ndarray, seed: int) -> np.ndarray:
    """For each output line, the index of the part file it comes from (seeded shuffle)."""
    labels = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    np.random.default_rng([seed, 0x1EAF]).shuffle(labels)
    return labels


def _without_messages(line: str) -> str:
    """A ``full`` part line as the ``prompt_response`` style writes it (same bytes)."""
    rec = json.loads(line)
    if "messages" not in rec:
        return line
    del rec["messages"]
    return json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n"


def _interleave(parts: list[Path], labels: np.ndarray, dest: Path, style: str) -> None:
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(open(p, encoding="utf-8")).readline for p in parts]
        with open(dest, "w", encoding="utf-8") as out:
            if style == "full":
                out.writelines(_without_messages(readers[i]()) for i in labels.tolist())
            else:
                out.writelines(readers[i]() for i in labels.tolist())


def _resolve_mixture(pool: Pool, mixture: Mixture, where: str) -> np.ndarray:
    """Mixture weights aligned with the pool's tasks (pool tasks it omits get 0)."""
    known = set(pool.names)
    for task in mixture.tasks:
        if task not in known:
            close = difflib.get_close_matches(task, pool.names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"{where}: task {task!r} is not in pool {pool.root}{hint}")
    by_name = mixture.as_dict()
    return np.array([by_name.get(t, 0.0) for t in pool.names], dtype=np.float64)


def materialise(
    pool: Pool | str | Path,
    mixture: Mixture | str | Path,
    budget: int,
    out: str | Path,
    *,
    seed: int = 0,
    allocation: str = "largest_remainder",
    max_epochs: int | None = None,
    format: str = "jsonl",
    separator: str = DEFAULT_SEPARATOR,
) -> SampleManifest:
    """Write ``budget`` examples drawn by ``mixture`` from ``pool`` to ``out``.

    ``out/train.jsonl`` is the shuffled sample, ``out/manifest.json`` records how it was
    made; ``format`` adds a trainer-specific export beside them (see taskpgm.export),
    whose plain prompts end with ``separator`` as the experts' do (``join_text``).
    """
    if format not in FORMATS:
        raise InputError(f"unknown format {format!r} (use one of: {', '.join(FORMATS)})")
    if allocation not in ALLOCATIONS:
        raise InputError(f"unknown allocation {allocation!r} (use {' or '.join(ALLOCATIONS)})")
    if not isinstance(budget, (int, np.integer)) or budget <= 0:
        raise InputError(f"budget must be a positive number of examples, got {budget}")
    if max_epochs is not None and max_epochs <= 0:
        raise InputError(f"max-epochs must be positive, got {max_epochs}")
    check_seed(seed)
    if not isinstance(separator, str):
        raise InputError(f"separator must be a string, got {separator!r}")
    if not isinstance(pool, Pool):
        pool = Pool.load(pool)
    if isinstance(mixture, Mixture):
        mix, mix_where = mixture, "mixture"
        mix_sha = _sha256_text(json.dumps(mixture.to_json(), sort_keys=True))
    else:
        mix, mix_where = Mixture.load(mixture), str(mixture)
        mix_sha = sha256_file(mixture)
    weights = _resolve_mixture(pool, mix, mix_where)
    counts = allocate(weights, int(budget), allocation, seed)

    rows: list[TaskSample] = []
    for info, w, c in zip(pool.tasks, weights, counts.tolist(), strict=True):
        available = info.count("train")
        if c > 0 and available == 0:
            raise InputError(
                f"{mix_where}: task {info.name!r} has weight {w:.4g} but no training examples"
            )
        epochs = math.ceil(c / available) if c else 0
        if max_epochs is not None and epochs > max_epochs:
            raise InputError(
                f"budget {budget} not reachable: task {info.name!r} needs {c} examples = "
                f"{epochs} epochs of its {available}, above --max-epochs {max_epochs}"
            )
        rows.append(TaskSample(task=info.name, weight=float(w), count=int(c),
                               available=available, epochs=epochs))

    out = Path(out)
    from taskpgm import export

    style = export.part_style(format)
    with atomic_dir(out, replaces="manifest.json") as tmp:
        parts_dir = tmp / ".parts"
        parts_dir.mkdir()
        parts: dict[str, Path] = {}
        for row in rows:
            if row.count == 0:
                continue
            plan = epoch_plan(row.count, row.available, _task_rng(seed, row.task))
            parts[row.task] = parts_dir / f"{row.task}.jsonl"
            _extract_task(pool, row.task, plan, parts[row.task], style)
        active = [r for r in rows if r.count > 0]
        order = mixing_order(np.array([r.count for r in active]), seed)
        _interleave([parts[r.task] for r in active], order, tmp / "train.jsonl", style)
        files = ["train.jsonl"] + export.export(
            format, tmp, parts=parts, rows=active, order=order, seed=seed, separator=separator
        )
        shutil.rmtree(parts_dir)
        manifest = SampleManifest(
            budget=int(budget), seed=seed, allocation=allocation, max_epochs=max_epochs,
            export_format=format, pool=portable_path(pool.root, out), pool_sha256=sha256_file(pool.root / "pool.json"),
            mixture_method=mix.method, mixture_sha256=mix_sha, tasks=rows, files=sorted(files),
        )
        atomic_write_json(tmp / "manifest.json", manifest.model_dump(mode="json"))
    return manifest


def _sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
