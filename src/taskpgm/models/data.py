"""Read training examples: a pool task's split or a materialised ``train.jsonl``."""

from __future__ import annotations

from pathlib import Path

from taskpgm.errors import InputError
from taskpgm.io import iter_jsonl
from taskpgm.tasks.pool import Example

TRAIN_FILE = "train.jsonl"


def read_train_jsonl(path: str | Path) -> list[Example]:
    """``{"prompt", "response"}`` or ``{"messages"}`` lines; ``id`` is optional here."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: training data not found (a directory with {TRAIN_FILE} "
                         "or a JSONL file)")
    if path.is_dir():
        path = path / TRAIN_FILE
    examples: list[Example] = []
    for lineno, rec in iter_jsonl(path):
        examples.append(Example.from_record({"id": lineno, **rec}, f"{path}:{lineno}"))
    if not examples:
        raise InputError(f"{path}: no training examples")
    return examples


def as_examples(examples: object) -> list[Example | tuple[str, str]]:
    """Accept a data dir / JSONL path, a list of :class:`Example`, or (prompt, response)
    pairs; chat examples keep their messages, so a chat template can render them."""
    if isinstance(examples, (str, Path)):
        return list(read_train_jsonl(examples))
    out: list[Example | tuple[str, str]] = []
    for ex in examples:  # type: ignore[attr-defined]
        if isinstance(ex, Example):
            out.append(ex)
        else:
            prompt, response = ex
            out.append((str(prompt), str(response)))
    if not out:
        raise InputError("no training examples given")
    return out
