"""The task pool: the on-disk schema every later stage reads.

A pool is a directory::

    POOL/pool.json                      # PoolManifest: one TaskInfo per task
    POOL/tasks/<task>/<split>.jsonl     # one Example per line

Splits are ``train`` (what mixtures sample from and experts train on), ``probe``
(what every expert is scored on, to measure affinity) and ``eval`` (held out for the
benchmark). A task whose ``role`` is ``heldout`` is never trained on: it exists to
evaluate mixtures and to serve as a target for target-aware utilities.

An example line is either ``{"id", "prompt", "response"}`` or chat-style
``{"id", "messages": [{"role", "content"}, ...]}`` (the last assistant turn is the
response, everything before it the prompt). Multiple-choice examples also carry
``"options": [...]`` and ``"answer": <index into options>``; their response is the
correct option's text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_json, iter_jsonl, read_json_model

SPLITS: tuple[str, ...] = ("train", "probe", "eval")
Split = Literal["train", "probe", "eval"]
POOL_FORMAT = "taskpgm-pool"
POOL_VERSION = 1

# Task names become directory names and Parquet shard names, so keep them path-safe.
TASK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


def check_task_name(name: str, context: str = "task name") -> str:
    if not isinstance(name, str) or not TASK_NAME_RE.match(name) or name in {".", ".."}:
        raise InputError(
            f"{context} {name!r} is not allowed: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)"
        )
    return name


class TaskInfo(BaseModel):
    """One task's entry in ``pool.json``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    source: str = "unknown"
    family: str | None = None
    role: Literal["train", "heldout"] = "train"
    kind: Literal["generative", "multiple_choice"] = "generative"
    counts: dict[str, int] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def count(self, split: str) -> int:
        return int(self.counts.get(split, 0))


class PoolManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["taskpgm-pool"] = POOL_FORMAT
    version: int = POOL_VERSION
    tasks: list[TaskInfo]
    metadata: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Example:
    """One prompt/response pair, with options when the task is multiple choice."""

    id: str
    prompt: str
    response: str
    options: tuple[str, ...] | None = None
    answer: int | None = None
    messages: tuple[dict[str, str], ...] | None = field(default=None, compare=False)

    @classmethod
    def from_record(cls, rec: dict[str, Any], where: str) -> Example:
        """Parse one JSONL object; ``where`` (``file:line``) prefixes every error."""
        ex_id = rec.get("id")
        if ex_id is None:
            raise InputError(f"{where}: missing field 'id'")
        messages = None
        if "messages" in rec:
            prompt, response, messages = _split_messages(rec["messages"], where)
        else:
            for key in ("prompt", "response"):
                if key not in rec:
                    raise InputError(f"{where}: missing field {key!r}")
                if not isinstance(rec[key], str):
                    raise InputError(f"{where}: field {key!r} must be a string")
            prompt, response = rec["prompt"], rec["response"]
        options = rec.get("options")
        answer = rec.get("answer")
        if options is not None:
            if not isinstance(options, list) or not options or not all(
                isinstance(o, str) for o in options
            ):
                raise InputError(f"{where}: field 'options' must be a non-empty list of strings")
            if not isinstance(answer, int) or not 0 <= answer < len(options):
                raise InputError(
                    f"{where}: field 'answer' must be an index into 'options' (0..{len(options) - 1})"
                )
            options = tuple(options)
        return cls(str(ex_id), prompt, response, options, answer, messages)

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"id": self.id}
        if self.messages is not None:
            rec["messages"] = [dict(m) for m in self.messages]
        else:
            rec["prompt"] = self.prompt
            rec["response"] = self.response
        if self.options is not None:
            rec["options"] = list(self.options)
            rec["answer"] = self.answer
        return rec


def _split_messages(
    messages: Any, where: str
) -> tuple[str, str, tuple[dict[str, str], ...]]:
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: field 'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(
            m.get("content"), str
        ):
            raise InputError(f"{where}: messages[{i}] needs string 'role' and 'content'")
    if messages[-1]["role"] != "assistant":
        raise InputError(f"{where}: the last message must have role 'assistant'")
    prompt = "".join(f"{m['role']}: {m['content']}\n" for m in messages[:-1]) + "assistant: "
    return prompt, messages[-1]["content"], tuple(dict(m) for m in messages)


class Pool:
    """A task pool on disk. Examples are streamed, never all loaded at once."""

    def __init__(self, root: str | Path, manifest: PoolManifest):
        self.root = Path(root)
        self.manifest = manifest
        self._by_name = {t.name: t for t in manifest.tasks}

    @classmethod
    def load(cls, root: str | Path) -> Pool:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: pool directory not found")
        path = root / "pool.json"
        manifest = read_json_model(path, PoolManifest)
        seen: set[str] = set()
        for t in manifest.tasks:
            check_task_name(t.name, f"{path}: task name")
            if t.name in seen:
                raise InputError(f"{path}: duplicate task name {t.name!r}")
            seen.add(t.name)
        return cls(root, manifest)

    @property
    def tasks(self) -> list[TaskInfo]:
        return list(self.manifest.tasks)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.manifest.tasks]

    def train_tasks(self) -> list[TaskInfo]:
        return [t for t in self.manifest.tasks if t.role == "train"]

    def heldout_tasks(self) -> list[TaskInfo]:
        return [t for t in self.manifest.tasks if t.role == "heldout"]

    def task(self, name: str) -> TaskInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise InputError(f"task {name!r} is not in pool {self.root}") from None

    def split_path(self, task: str, split: str) -> Path:
        return self.root / "tasks" / task / f"{split}.jsonl"

    def iter_examples(self, task: str, split: str) -> Iterator[Example]:
        info = self.task(task)
        path = self.split_path(task, split)
        if not path.is_file():
            if info.count(split):
                raise InputError(f"{path}: missing, but {self.root / 'pool.json'} lists "
                                 f"{info.count(split)} {split} examples for task {task!r}")
            return
        n = 0
        for lineno, rec in iter_jsonl(path):
            n += 1
            yield Example.from_record(rec, f"{path}:{lineno}")
        if split in info.counts and n != info.count(split):
            # A file cut short (or grown) since the pool was written would otherwise train
            # and score on the wrong data without a word.
            raise InputError(f"{path}: {n} examples, but {self.root / 'pool.json'} lists "
                             f"{info.count(split)} for task {task!r} (edited or truncated?)")

    def examples(self, task: str, split: str) -> list[Example]:
        return list(self.iter_examples(task, split))


def write_manifest(root: str | Path, manifest: PoolManifest) -> None:
    """Write ``pool.json`` atomically (tasks' JSONL files are written before it)."""
    atomic_write_json(Path(root) / "pool.json", manifest.model_dump(mode="json"))
