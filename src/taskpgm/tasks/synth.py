"""The built-in synthetic task suite: the embedded default for the demo and the tests.

Procedural text tasks grouped into skill families. Each family has an uneven number of
training variants (1 to 5) that differ only in the instruction words (like the 2 to 10+
templates T0/FLAN ship per dataset) and in size, plus one held-out task (role ``heldout``) with an
instruction not seen in training. Within a family the input line and the answer format
are identical, so a tiny model can transfer between variants; across families the
inputs and answers differ (letters, digits, code words, numbers with options).

Every prompt ends with ``"\\nAnswer:"`` and every response starts with a space (the
GPT-2 convention: prompt + response is the training text). See docs/pool.md.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from taskpgm.errors import InputError
from taskpgm.tasks.pool import Example, Pool, TaskInfo
from taskpgm.tasks.writer import TaskData, write_pool

LETTERS = "abcdefghijklmnopqrstuvwxyz"
# A fixed word -> code table for the "code" family (the skill is to memorise and apply it).
CODE_TABLE: dict[str, str] = {
    "red": "zu", "blue": "ko", "green": "mi", "black": "ta", "white": "po", "gold": "ne",
    "tree": "vi", "stone": "ra", "river": "lo", "cloud": "fe", "fire": "su", "snow": "da",
}


@dataclass(frozen=True)
class Payload:
    text: str  # what follows "Input: "
    answer: str
    options: tuple[str, ...] | None = None


def _reverse(rng: random.Random) -> Payload:
    items = [rng.choice(LETTERS) for _ in range(rng.randint(3, 6))]
    return Payload(" ".join(items), " ".join(reversed(items)))


def _sort(rng: random.Random) -> Payload:
    digits = [str(rng.randint(0, 9)) for _ in range(rng.randint(3, 7))]
    return Payload(" ".join(digits), " ".join(sorted(digits)))


def _code(rng: random.Random) -> Payload:
    words = [rng.choice(sorted(CODE_TABLE)) for _ in range(rng.randint(2, 4))]
    return Payload(" ".join(words), " ".join(CODE_TABLE[w] for w in words))


def _largest(rng: random.Random) -> Payload:
    numbers = [str(n) for n in rng.sample(range(1, 100), 3)]
    best = max(numbers, key=int)
    return Payload("Options: " + ", ".join(numbers), best, tuple(numbers))


def _add(rng: random.Random) -> Payload:
    a, b = rng.randint(0, 49), rng.randint(0, 49)
    return Payload(f"{a} + {b}", str(a + b))


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[random.Random], Payload]
    train_templates: tuple[str, ...]  # instruction lines, one training task each
    heldout_template: str  # a new instruction for the held-out task


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("reverse", _reverse,
               ("Reverse the list.", "Write the items backwards.", "Flip the order of the items.",
                "List the items from last to first.", "Read the items back in reverse."),
               "Give the items in the opposite order."),
        Family("sort", _sort,
               ("Sort the digits.", "Put the digits in increasing order.",
                "Arrange the digits from small to large.", "List the digits in ascending order.",
                "Rewrite the digits sorted."),
               "Order the digits from lowest to highest."),
        Family("code", _code,
               ("Encode the words.", "Translate the words into code.",
                "Apply the secret code to each word.", "Replace each word by its code.",
                "Write the code for every word."),
               "Convert each word to its code word."),
        Family("largest", _largest,
               ("Pick the largest number.", "Which option is the biggest?",
                "Choose the maximum value.", "Name the highest number.",
                "Find the biggest option."),
               "Select the greatest of the options."),
        Family("add", _add,
               ("Add the numbers.", "Compute the sum.", "What is the total?",
                "Sum the two numbers.", "Add them together."),
               "Find the sum of the two numbers."),
    )
}
DEFAULT_FAMILIES: tuple[str, ...] = ("reverse", "sort", "code", "largest")
# Training variants (templates) per family: uneven, like real pools (T0/FLAN ship 2 to 10+
# templates per dataset), so that uniform-over-tasks over-weights the families with many
# templates -- the redundancy a mixing method has to notice. The first k counts are used
# for k families and handed to the families by a seeded permutation, so no family (and
# no held-out task) is always the over-represented one. Fixed before any run; not tuned.
VARIANT_COUNTS: tuple[int, ...] = (5, 1, 3, 2, 4)
# Train sizes of the variants, cycled from a per-family offset, so that size is tied
# neither to the skill nor to the number of templates.
VARIANT_SIZES: tuple[int, ...] = (600, 200, 60, 400, 120)
PROBE_SIZE = 32
EVAL_SIZE = 64
HELDOUT_EVAL_SIZE = 100


def variant_counts(families: Sequence[str], seed: int,
                   counts: Sequence[int] | None = None) -> dict[str, int]:
    """Training variants per family: ``counts`` in order, or the seeded default."""
    if counts is not None:
        if len(counts) != len(families):
            raise InputError(f"variant counts: {len(counts)} given for {len(families)} families")
        top = min(len(FAMILIES[f].train_templates) for f in families)
        bad = [c for c in counts if not 1 <= int(c) <= top]
        if bad:
            raise InputError(f"variant counts must be between 1 and {top}, got {bad[0]}")
        return {f: int(c) for f, c in zip(families, counts, strict=True)}
    base = [VARIANT_COUNTS[i % len(VARIANT_COUNTS)] for i in range(len(families))]
    random.Random(f"taskpgm-synth/{seed}/variant-counts").shuffle(base)
    return dict(zip(families, base, strict=True))


def render(template: str, payload: Payload) -> Example:
    prompt = f"{template}\nInput: {payload.text}\nAnswer:"
    options = None if payload.options is None else tuple(" " + o for o in payload.options)
    answer = None if payload.options is None else payload.options.index(payload.answer)
    return Example("", prompt, " " + payload.answer, options, answer)


def _examples(family: Family, template: str, n: int, rng: random.Random, task: str) -> list[Example]:
    seen: set[str] = set()
    out: list[Example] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise InputError(f"synthetic task {task!r}: cannot draw {n} distinct prompts")
        ex = render(template, family.make(rng))
        if ex.prompt in seen:
            continue
        seen.add(ex.prompt)
        out.append(Example(f"{task}-{len(out):05d}", ex.prompt, ex.response, ex.options, ex.answer))
    return out


def synthetic_tasks(
    seed: int = 0,
    families: Sequence[str] = DEFAULT_FAMILIES,
    scale: float = 1.0,
    probe_size: int = PROBE_SIZE,
    eval_size: int = EVAL_SIZE,
    counts: Sequence[int] | None = None,
) -> list[TaskData]:
    """The suite's tasks in memory (``scale`` shrinks or grows every train split)."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise InputError(f"unknown synthetic family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
    if scale <= 0:
        raise InputError(f"synthetic scale must be positive, got {scale}")
    n_variants = variant_counts(families, seed, counts)
    tasks: list[TaskData] = []
    for fi, fname in enumerate(families):
        fam = FAMILIES[fname]
        sizes = VARIANT_SIZES[fi % len(VARIANT_SIZES):] + VARIANT_SIZES[: fi % len(VARIANT_SIZES)]
        for vi, template in enumerate(fam.train_templates[: n_variants[fname]]):
            name = f"{fname}_v{vi + 1}"
            n_train = max(4, round(sizes[vi % len(sizes)] * scale))
            rng = random.Random(f"taskpgm-synth/{seed}/{name}")
            exs = _examples(fam, template, n_train + probe_size + eval_size, rng, name)
            splits = {"train": exs[:n_train], "probe": exs[n_train:n_train + probe_size],
                      "eval": exs[n_train + probe_size:]}
            tasks.append(TaskData(_info(name, fam, "train", template), splits))
        name = f"{fname}_heldout"
        rng = random.Random(f"taskpgm-synth/{seed}/{name}")
        n_eval = max(eval_size, HELDOUT_EVAL_SIZE) if eval_size == EVAL_SIZE else eval_size
        exs = _examples(fam, fam.heldout_template, probe_size + n_eval, rng, name)
        splits = {"probe": exs[:probe_size], "eval": exs[probe_size:]}
        tasks.append(TaskData(_info(name, fam, "heldout", fam.heldout_template), splits))
    return tasks


def _info(name: str, fam: Family, role: str, template: str) -> TaskInfo:
    return TaskInfo(
        name=name,
        source="synthetic",
        family=fam.name,
        role=role,  # type: ignore[arg-type]
        kind="multiple_choice" if fam.name == "largest" else "generative",
        metadata={"template": template},
    )


def build_synthetic_pool(
    out: str | Path,
    seed: int = 0,
    families: Sequence[str] = DEFAULT_FAMILIES,
    scale: float = 1.0,
    probe_size: int = PROBE_SIZE,
    eval_size: int = EVAL_SIZE,
    counts: Sequence[int] | None = None,
) -> Pool:
    """Write the synthetic suite as a pool at ``out``; the same seed gives the same bytes.

    ``counts``: training variants per family (in ``families`` order); default: the uneven
    :data:`VARIANT_COUNTS`, assigned to families by a permutation seeded with ``seed``.
    """
    tasks = synthetic_tasks(seed, families, scale, probe_size, eval_size, counts)
    meta = {"suite": "synthetic", "seed": seed, "families": list(families), "scale": scale,
            "variants": variant_counts(families, seed, counts)}
    return write_pool(out, tasks, meta)
