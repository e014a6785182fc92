"""Deterministic train / probe / eval splits, de-duplication and the leakage check.

Each example is placed by a stable hash of its (whitespace-normalised) prompt, so the
split does not depend on file order, Python's hash seed or the machine, and two copies
of one prompt always land in the same split. Split sizes are exact: examples are ranked
by hash and the first ``n_eval`` go to eval, the next ``n_probe`` to probe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from taskpgm.errors import InputError
from taskpgm.tasks.pool import Example

# Source split names people use, mapped onto the pool's three splits.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "probe": "probe",
    "eval": "eval",
    "validation": "eval",
    "valid": "eval",
    "val": "eval",
    "dev": "eval",
    "test": "eval",
}


@dataclass(frozen=True)
class SplitConfig:
    """How examples are divided. Fractions are of a task's de-duplicated examples."""

    probe_fraction: float = 0.1
    eval_fraction: float = 0.1
    probe_max: int | None = 100
    eval_max: int | None = 500
    salt: str = "taskpgm"
    strict: bool = False

    def __post_init__(self) -> None:
        for name in ("probe_fraction", "eval_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:  # also refuses NaN
                raise InputError(f"split option --{name.replace('_', '-')} must be in [0, 1), "
                                 f"got {v}")
        if self.probe_fraction + self.eval_fraction >= 1.0:
            raise InputError("split options: --probe-fraction + --eval-fraction must be below 1")
        for name in ("probe_max", "eval_max"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise InputError(f"split option --{name.replace('_', '-')} must be a "
                                 f"non-negative integer, got {v!r}")


@dataclass
class SplitReport:
    """What the splitter removed, so the importer can tell the user."""

    duplicates: int = 0
    leaked: int = 0
    leaked_prompts: list[str] = field(default_factory=list)

    def add(self, other: SplitReport) -> None:
        self.duplicates += other.duplicates
        self.leaked += other.leaked
        self.leaked_prompts.extend(other.leaked_prompts[: max(0, 5 - len(self.leaked_prompts))])


def normalise_prompt(prompt: str) -> str:
    return " ".join(prompt.split())


def stable_hash(text: str, salt: str = "taskpgm") -> int:
    digest = hashlib.blake2b(f"{salt}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def example_id(prompt: str, response: str) -> str:
    """A content id for sources that have none (stable across runs and machines)."""
    return hashlib.blake2b(f"{prompt}\0{response}".encode(), digest_size=8).hexdigest()


def dedupe(examples: Iterable[Example]) -> tuple[list[Example], int]:
    """Drop exact repeats (same prompt, response and options); the first copy wins."""
    seen: set[tuple[object, ...]] = set()
    kept: list[Example] = []
    dropped = 0
    for ex in examples:
        key = (normalise_prompt(ex.prompt), ex.response, ex.options)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(ex)
    return kept, dropped


def _target(n: int, fraction: float, cap: int | None, keep_one: bool) -> int:
    k = round(n * fraction)
    if keep_one and fraction > 0 and k == 0 and n >= 3:
        k = 1  # tiny tasks still get one probe / eval example
    return k if cap is None else min(k, cap)


def _by_hash(examples: list[Example], salt: str) -> list[Example]:
    return sorted(examples, key=lambda e: (stable_hash(normalise_prompt(e.prompt), salt), e.id))


def _carve(
    examples: list[Example], sizes: list[tuple[str, int]], rest: str, salt: str
) -> dict[str, list[Example]]:
    """Fill the named splits in hash order; prompts are never divided between splits."""
    out: dict[str, list[Example]] = {name: [] for name, _ in sizes}
    out.setdefault(rest, [])
    order = _by_hash(examples, salt)
    i = 0
    for name, size in sizes:
        while i < len(order) and len(out[name]) < size:
            key = normalise_prompt(order[i].prompt)
            while i < len(order) and normalise_prompt(order[i].prompt) == key:
                out[name].append(order[i])
                i += 1
    out[rest].extend(order[i:])
    return out


def split_task(
    task: str, given: dict[str, list[Example]], cfg: SplitConfig
) -> tuple[dict[str, list[Example]], SplitReport]:
    """Split one task's examples. ``given`` maps pool split names to source examples.

    Splits the source did not provide are carved from its train part by hash. A prompt
    found in two splits is leakage: an error under ``strict``, otherwise removed from
    the earlier split in the order eval > probe > train (evaluation data is kept).
    """
    report = SplitReport()
    cleaned: dict[str, list[Example]] = {}
    for split, examples in given.items():
        cleaned[split], dup = dedupe(examples)
        report.duplicates += dup

    # Leakage between source-given splits: eval wins over probe, probe over train.
    claimed: dict[str, str] = {}
    for split in ("eval", "probe", "train"):
        kept = []
        for ex in cleaned.get(split, []):
            key = normalise_prompt(ex.prompt)
            if key in claimed:
                if cfg.strict:
                    raise InputError(
                        f"task {task!r}: prompt {key[:60]!r} is in both {claimed[key]} and "
                        f"{split} (leakage; without --strict it is removed from {split})"
                    )
                report.leaked += 1
                if len(report.leaked_prompts) < 5:
                    report.leaked_prompts.append(f"{task}/{split}: {key[:60]}")
                continue
            kept.append(ex)
        cleaned[split] = kept
        for ex in kept:
            claimed.setdefault(normalise_prompt(ex.prompt), split)

    train = cleaned.get("train", [])
    n = len(train) + len(cleaned.get("probe", [])) + len(cleaned.get("eval", []))
    sizes: list[tuple[str, int]] = []
    if "eval" not in given:
        sizes.append(("eval", _target(n, cfg.eval_fraction, cfg.eval_max, True)))
    if "probe" not in given:
        sizes.append(("probe", _target(n, cfg.probe_fraction, cfg.probe_max, True)))
    carved = _carve(train, sizes, "train", cfg.salt)
    result = {
        "train": carved["train"],
        "probe": cleaned["probe"] if "probe" in given else carved["probe"],
        "eval": cleaned["eval"] if "eval" in given else carved["eval"],
    }
    return result, report
