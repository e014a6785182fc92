"""Read training examples: a pool task's split or a materialised ``train.jsonl``."""

from __future__ import annotations

from pathlib import Path

from taskpgm.errors import InputError
from taskpgm.io import iter_jsonl
from taskpgm.tasks.pool import Example

TRAIN_FILE = "train.jsonl"


def read_train_jsonl(path: str | Path) -> list[tuple[str, str]]:
    """``{"prompt", "response"}`` or ``{"messages"}`` lines; ``id`` is optional here."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: training data not found (a directory with {TRAIN_FILE} "
                         "or a JSONL file)")
    if path.is_dir():
        path = path / TRAIN_FILE
    pairs: list[tuple[str, str]] = []
    for lineno, rec in iter_jsonl(path):
        ex = Example.from_record({"id": lineno, **rec}, f"{path}:{lineno}")
        pairs.append((ex.prompt, ex.response))
    if not pairs:
        raise InputError(f"{path}: no training examples")
    return pairs


def as_pairs(examples: object) -> list[tuple[str, str]]:
    """Accept a data dir / JSONL path, a list of :class:`Example`, or (prompt, response) pairs."""
    if isinstance(examples, (str, Path)):
        return read_train_jsonl(examples)
    out: list[tuple[str, str]] = []
    for ex in examples:  # type: ignore[attr-defined]
        if isinstance(ex, Example):
            out.append((ex.prompt, ex.response))
        else:
            prompt, response = ex
            out.append((str(prompt), str(response)))
    if not out:
        raise InputError("no training examples given")
    return out
