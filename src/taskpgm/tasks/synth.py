"""The built-in synthetic task suites: the embedded default for the demo and the tests.

Procedural text tasks grouped into skill families. Each family has an uneven number of
training variants (1 to 5) that differ only in the instruction words (like the 2 to 10+
templates T0/FLAN ship per dataset) and in size, plus one held-out task (role ``heldout``) with an
instruction not seen in training. Within a family the input line and the answer format
are identical, so a tiny model can transfer between variants; across families the
inputs and answers differ (letters, digits, code words, numbers with options).

The ``redundancy`` suite asks one question: can a redundancy-aware mixture beat uniform?
8 skills appear under 1 to 10 near-identical templates (a seeded permutation of
:data:`REDUNDANCY_COUNTS`, 33 training tasks), all training tasks have the same size (so
size-proportional is uniform and only redundancy differs), and each skill has two
held-out tasks with two wordings never used in training.

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


# Three more skills for the redundancy suite, each with its own input alphabet so a tiny
# model can tell the skills apart from the input as well as from the instruction.
def _copy(rng: random.Random) -> Payload:
    items = [rng.choice(LETTERS.upper()) for _ in range(rng.randint(3, 6))]
    return Payload(" ".join(items), " ".join(items))


def _count(rng: random.Random) -> Payload:
    items = [rng.choice("#@%&*+") for _ in range(rng.randint(2, 9))]
    return Payload(" ".join(items), str(len(items)))


ANIMALS = ("ant", "bee", "cat", "dog", "elk", "fox", "gnu", "hen", "owl", "pig", "ram", "yak")


def _initials(rng: random.Random) -> Payload:
    words = [rng.choice(ANIMALS) for _ in range(rng.randint(2, 4))]
    return Payload(" ".join(words), " ".join(w[0] for w in words))


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[random.Random], Payload]
    train_templates: tuple[str, ...]  # instruction lines, one training task each
    heldout_templates: tuple[str, ...]  # new instructions, one held-out task each


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("reverse", _reverse,
               ("Reverse the list.", "Write the items backwards.", "Flip the order of the items.",
                "List the items from last to first.", "Read the items back in reverse."),
               ("Give the items in the opposite order.",)),
        Family("sort", _sort,
               ("Sort the digits.", "Put the digits in increasing order.",
                "Arrange the digits from small to large.", "List the digits in ascending order.",
                "Rewrite the digits sorted."),
               ("Order the digits from lowest to highest.",)),
        Family("code", _code,
               ("Encode the words.", "Translate the words into code.",
                "Apply the secret code to each word.", "Replace each word by its code.",
                "Write the code for every word."),
               ("Convert each word to its code word.",)),
        Family("largest", _largest,
               ("Pick the largest number.", "Which option is the biggest?",
                "Choose the maximum value.", "Name the highest number.",
                "Find the biggest option."),
               ("Select the greatest of the options.",)),
        Family("add", _add,
               ("Add the numbers.", "Compute the sum.", "What is the total?",
                "Sum the two numbers.", "Add them together."),
               ("Find the sum of the two numbers.",)),
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

# -- the redundancy suite ----------------------------------------------------------------
# Near-identical wordings of one instruction per skill: a short prefix x final punctuation
# (12 in all), so that experts transfer between them and a skill's templates are redundant
# copies. Skill i lists them in an order rotated by i prefixes: a skill with k training
# templates uses the first k, and its two held-out tasks use the last two (the prefix
# i + 5, with both endings), which that skill never trains on. Every prefix still occurs
# in training (skill i always trains on prefix i, and there are 8 skills for 6 prefixes),
# and the instruction keeps its capital, so a held-out prompt holds no word the models
# never saw: a word seen only at evaluation would keep its random embedding and turn
# held-out loss into noise (seen in development: an unseen "Then" prefix made fine-tuning
# on any mixture worse than the base model on held-out loss).
PREFIXES: tuple[str, ...] = ("", "Task: ", "Now: ", "Next: ", "Step: ", "Q: ")
ENDINGS: tuple[str, ...] = (".", ":")


def near_identical(instruction: str, rotation: int = 0) -> tuple[str, ...]:
    """The 12 templates of one skill in its rotated order (10 for training, 2 held out)."""
    combos = [p + instruction + e for p in PREFIXES for e in ENDINGS]
    shift = (2 * rotation) % len(combos)
    return tuple(combos[shift:] + combos[:shift])


def _skill(index: int, name: str, make: Callable[[random.Random], Payload],
           instruction: str) -> Family:
    templates = near_identical(instruction, index)
    return Family(name, make, templates[:-2], templates[-2:])


REDUNDANCY_SKILLS: dict[str, Family] = {
    f.name: f
    for f in (
        _skill(0, "reverse", _reverse, "Reverse the list"),
        _skill(1, "sort", _sort, "Sort the digits"),
        _skill(2, "code", _code, "Encode the words"),
        _skill(3, "largest", _largest, "Pick the largest number"),
        _skill(4, "add", _add, "Add the numbers"),
        _skill(5, "copy", _copy, "Copy the letters"),
        _skill(6, "count", _count, "Count the symbols"),
        _skill(7, "initials", _initials, "Write the first letters"),
    )
}
# Templates per skill: the multiset (1, 1, 2, 3, 4, 5, 7, 10), 33 in all, permuted over the
# skills by the seed. Stored spread out because k skills take the first k counts, so a
# subset of skills still mixes rare and heavily templated ones. Fixed; not tuned.
REDUNDANCY_COUNTS: tuple[int, ...] = (10, 1, 4, 2, 7, 1, 5, 3)
# One train size for every task: size-proportional mixing is then uniform, and the only
# difference between tasks that a mixture can exploit is the redundancy.
REDUNDANCY_SIZE = 200


@dataclass(frozen=True)
class Suite:
    families: dict[str, Family]
    default_families: tuple[str, ...]
    counts: tuple[int, ...]  # training templates per family, handed out by a seeded permutation
    sizes: tuple[int, ...]  # train sizes, cycled from a per-family offset
    tag: str  # task names: <family>_<tag><i>


SUITES: dict[str, Suite] = {
    "default": Suite(FAMILIES, DEFAULT_FAMILIES, VARIANT_COUNTS, VARIANT_SIZES, "v"),
    "redundancy": Suite(REDUNDANCY_SKILLS, tuple(REDUNDANCY_SKILLS), REDUNDANCY_COUNTS,
                        (REDUNDANCY_SIZE,), "t"),
}


def get_suite(suite: str) -> Suite:
    if suite not in SUITES:
        raise InputError(f"unknown synthetic suite {suite!r} (valid: {', '.join(SUITES)})")
    return SUITES[suite]


def variant_counts(families: Sequence[str], seed: int,
                   counts: Sequence[int] | None = None, *, suite: str = "default") -> dict[str, int]:
    """Training variants per family: ``counts`` in order, or the seeded default."""
    s = get_suite(suite)
    if counts is not None:
        if len(counts) != len(families):
            raise InputError(f"variant counts: {len(counts)} given for {len(families)} families")
        top = min(len(s.families[f].train_templates) for f in families)
        bad = [c for c in counts if not 1 <= int(c) <= top]
        if bad:
            raise InputError(f"variant counts must be between 1 and {top}, got {bad[0]}")
        return {f: int(c) for f, c in zip(families, counts, strict=True)}
    base = [s.counts[i % len(s.counts)] for i in range(len(families))]
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
    families: Sequence[str] | None = None,
    scale: float = 1.0,
    probe_size: int = PROBE_SIZE,
    eval_size: int = EVAL_SIZE,
    counts: Sequence[int] | None = None,
    *,
    suite: str = "default",
) -> list[TaskData]:
    """The suite's tasks in memory (``scale`` shrinks or grows every train split).

    ``families``: default the suite's own (the default four, or all 8 redundancy skills).
    """
    s = get_suite(suite)
    families = s.default_families if families is None else families
    unknown = [f for f in families if f not in s.families]
    if unknown:
        raise InputError(f"unknown synthetic family {unknown[0]!r} for suite {suite!r} "
                         f"(known: {', '.join(s.families)})")
    if scale <= 0:
        raise InputError(f"synthetic scale must be positive, got {scale}")
    n_variants = variant_counts(families, seed, counts, suite=suite)
    tasks: list[TaskData] = []
    for fi, fname in enumerate(families):
        fam = s.families[fname]
        sizes = s.sizes[fi % len(s.sizes):] + s.sizes[: fi % len(s.sizes)]
        for vi, template in enumerate(fam.train_templates[: n_variants[fname]]):
            name = f"{fname}_{s.tag}{vi + 1}"
            n_train = max(4, round(sizes[vi % len(sizes)] * scale))
            rng = random.Random(f"taskpgm-synth/{seed}/{name}")
            exs = _examples(fam, template, n_train + probe_size + eval_size, rng, name)
            splits = {"train": exs[:n_train], "probe": exs[n_train:n_train + probe_size],
                      "eval": exs[n_train + probe_size:]}
            tasks.append(TaskData(_info(name, fam, "train", template), splits))
        n_eval = max(eval_size, HELDOUT_EVAL_SIZE) if eval_size == EVAL_SIZE else eval_size
        for hi, template in enumerate(fam.heldout_templates):
            # One held-out task keeps the plain name <family>_heldout (the default suite).
            name = f"{fname}_heldout" + ("" if len(fam.heldout_templates) == 1 else str(hi + 1))
            rng = random.Random(f"taskpgm-synth/{seed}/{name}")
            exs = _examples(fam, template, probe_size + n_eval, rng, name)
            splits = {"probe": exs[:probe_size], "eval": exs[probe_size:]}
            tasks.append(TaskData(_info(name, fam, "heldout", template), splits))
    return tasks


def pretraining_corpus(n: int, seed: int, families: Sequence[str], *, suite: str = "default",
                       exclude: set[str] | frozenset[str] = frozenset()) -> list[Example]:
    """``n`` examples of the suite's language for a tiny base to read before fine-tuning:
    the skills in turn (balanced), each under a wording drawn from *all* of its wordings
    (training and held-out), with inputs from a random stream of their own.

    A real base model has read text like every instruction before it is fine-tuned; a
    tiny model pre-trained on the training tasks alone has not, and reads a held-out
    wording's unfamiliar prefix as a cue for whichever skill it saw that prefix with
    (docs/DECISIONS.md D13-D15). No prompt in ``exclude`` (the pool's probe and eval
    prompts) is ever emitted, so held-out *examples* stay unseen.
    """
    s = get_suite(suite)
    unknown = [f for f in families if f not in s.families]
    if unknown or not families:
        raise InputError(f"pretraining corpus: unknown synthetic family "
                         f"{(unknown or [''])[0]!r} for suite {suite!r}")
    if n < 1:
        raise InputError(f"pretraining corpus: need at least one example, got {n}")
    rng = random.Random(f"taskpgm-synth/{seed}/pretraining-corpus")
    fams = [s.families[f] for f in families]
    out: list[Example] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise InputError(f"pretraining corpus: cannot draw {n} prompts outside the "
                             "probe and eval splits")
        fam = fams[len(out) % len(fams)]
        ex = render(rng.choice(fam.train_templates + fam.heldout_templates), fam.make(rng))
        if ex.prompt in exclude:
            continue
        out.append(Example(f"pretrain-{len(out):06d}", ex.prompt, ex.response))
    return out


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
    families: Sequence[str] | None = None,
    scale: float = 1.0,
    probe_size: int = PROBE_SIZE,
    eval_size: int = EVAL_SIZE,
    counts: Sequence[int] | None = None,
    *,
    suite: str = "default",
) -> Pool:
    """Write a synthetic suite as a pool at ``out``; the same seed gives the same bytes.

    ``suite``: ``"default"`` or ``"redundancy"``. ``counts``: training variants per family
    (in ``families`` order); default: the suite's uneven counts (:data:`VARIANT_COUNTS`,
    :data:`REDUNDANCY_COUNTS`), assigned to families by a permutation seeded with ``seed``.
    """
    families = get_suite(suite).default_families if families is None else families
    tasks = synthetic_tasks(seed, families, scale, probe_size, eval_size, counts, suite=suite)
    # The default suite has always been recorded as "synthetic": kept so its bytes stay put.
    meta = {"suite": "synthetic" if suite == "default" else suite, "seed": seed,
            "families": list(families), "scale": scale,
            "variants": variant_counts(families, seed, counts, suite=suite)}
    return write_pool(out, tasks, meta)
