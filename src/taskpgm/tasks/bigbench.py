"""BIG-bench tasks from the ``bigbench`` PyPI sdist.

The sdist (``pip download --no-deps bigbench==1.0.0``, 358 MB) ships every JSON task
as ``bigbench/benchmark_tasks/<task>[/<subtask>]/task.json``. It is downloaded once into
the cache (``$TASKPGM_CACHE`` or ``~/.cache/taskpgm``), and only the requested members
are unpacked. Multiple-choice examples (``target_scores``) keep their options and the
response is the best-scoring option; generative examples use their (first) target.

Subtasks are named ``<task>_<subtask>``, which gives the BIG-Bench-Hard names, e.g.
``logical_deduction_three_objects``; naming the parent task selects all its subtasks.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_json, read_json
from taskpgm.tasks.pool import Example, Pool, TaskInfo
from taskpgm.tasks.splits import SplitConfig, example_id, split_task
from taskpgm.tasks.writer import TaskData, write_pool

BIGBENCH_VERSION = "1.0.0"
SDIST_NAME = f"bigbench-{BIGBENCH_VERSION}.tar.gz"
MEMBER_ROOT = "bigbench/benchmark_tasks/"

# The BIG-Bench-Hard tasks (Suzgun et al. 2022) that are JSON tasks in bigbench 1.0.0
# (boolean_expressions, multistep_arithmetic_two and web_of_lies are programmatic there).
BBH_TASKS: tuple[str, ...] = (
    "causal_judgment", "date_understanding", "disambiguation_qa",
    "dyck_languages", "formal_fallacies_syllogisms_negation", "geometric_shapes", "hyperbaton",
    "logical_deduction_five_objects", "logical_deduction_seven_objects",
    "logical_deduction_three_objects", "movie_recommendation",
    "navigate", "object_counting", "penguins_in_a_table", "reasoning_about_colored_objects",
    "ruin_names", "salient_translation_error_detection", "snarks", "sports_understanding",
    "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects",
    "word_sorting",
)

# A training suite of short JSON tasks not in BBH (mixed multiple choice and generative).
DEFAULT_TRAIN_TASKS: tuple[str, ...] = (
    "anachronisms", "analogical_similarity", "analytic_entailment", "bbq_lite_json",
    "cause_and_effect", "code_line_description", "color", "common_morpheme",
    "conceptual_combinations", "crass_ai", "cryptonite", "dark_humor_detection",
    "emoji_movie", "empirical_judgments", "english_proverbs", "entailed_polarity",
    "epistemic_reasoning", "evaluating_information_essentiality", "fact_checker",
    "fantasy_reasoning", "figure_of_speech_detection", "general_knowledge",
    "hindu_knowledge", "human_organs_senses", "identify_math_theorems",
    "implicatures", "implicit_relations", "intent_recognition", "irony_identification",
    "known_unknowns", "logic_grid_puzzle", "logical_args", "logical_fallacy_detection",
    "metaphor_boolean", "misconceptions", "moral_permissibility", "nonsense_words_grammar",
    "novel_concepts", "odd_one_out", "periodic_elements", "physical_intuition",
    "physics", "presuppositions_as_nli", "riddle_sense", "sentence_ambiguity",
    "similarities_abstraction", "strange_stories", "timedial", "understanding_fables",
    "winowhy",
)


def default_suite() -> dict[str, list[str]]:
    """A default BIG-bench suite: ~50 training tasks and the BBH tasks held out."""
    return {"train": list(DEFAULT_TRAIN_TASKS), "heldout": list(BBH_TASKS)}


def cache_dir() -> Path:
    from taskpgm.io import user_cache_dir

    return user_cache_dir() / "bigbench"


def ensure_sdist(cache: Path | None = None) -> Path:
    """The sdist path, downloading it with pip on first use."""
    cache = cache or cache_dir()
    path = cache / SDIST_NAME
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           f"bigbench=={BIGBENCH_VERSION}", "-d", str(cache)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not path.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InputError(f"could not download bigbench=={BIGBENCH_VERSION} with pip: {tail[0]}")
    return path


def _task_key(member: str) -> str | None:
    """``.../benchmark_tasks/a/b/task.json`` -> ``a/b``."""
    i = member.find(MEMBER_ROOT)
    if i < 0 or not member.endswith("/task.json"):
        return None
    return member[i + len(MEMBER_ROOT): -len("/task.json")]


def task_index(sdist: Path) -> dict[str, str]:
    """Map task key (``a`` or ``a/b``) to its member name; cached beside the sdist."""
    index_path = sdist.with_suffix(".index.json")
    if index_path.is_file() and index_path.stat().st_mtime >= sdist.stat().st_mtime:
        return dict(read_json(index_path))
    with tarfile.open(sdist, "r:*") as tar:
        index = {k: m for m in tar.getnames() if (k := _task_key(m)) is not None}
    atomic_write_json(index_path, index)
    return index


def pool_name(key: str) -> str:
    return key.replace("/", "_")


def resolve_tasks(names: Sequence[str], index: dict[str, str]) -> list[str]:
    """Task keys for the requested names (a parent with subtasks expands to them)."""
    by_pool_name = {pool_name(k): k for k in index}
    keys: list[str] = []
    for name in names:
        key = by_pool_name.get(name) or by_pool_name.get(name.replace("/", "_").replace(":", "_"))
        if key is None and any(k.startswith(name + "/") for k in index):
            key = name  # a parent that is only a directory of subtasks
        if key is None:
            close = difflib.get_close_matches(name, list(by_pool_name), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise InputError(f"unknown BIG-bench task {name!r}{hint}")
        subs = sorted(k for k in index if k.startswith(key + "/"))
        for k in subs or [key]:
            if k not in keys:
                keys.append(k)
    return keys


def extract_tasks(sdist: Path, keys: Sequence[str], dest: Path) -> dict[str, Path]:
    """Unpack only the members for ``keys`` (one pass over the archive) into ``dest``."""
    index = task_index(sdist)
    paths = {k: dest / k / "task.json" for k in keys}
    missing = {index[k]: k for k in keys if not paths[k].is_file()}
    if missing:
        with tarfile.open(sdist, "r:*") as tar:
            for member in tar:
                key = missing.get(member.name)
                if key is None:
                    continue
                fh = tar.extractfile(member)
                assert fh is not None
                paths[key].parent.mkdir(parents=True, exist_ok=True)
                tmp = paths[key].with_suffix(".tmp")
                tmp.write_bytes(fh.read())
                tmp.replace(paths[key])
    return paths


def _target(ex: dict[str, Any], where: str) -> str:
    target = ex.get("target")
    if isinstance(target, list):
        target = target[0] if target else None
    if not isinstance(target, str):
        raise InputError(f"{where}: example has neither 'target_scores' nor a string 'target'")
    return target


def convert_task_json(raw: dict[str, Any], where: str) -> tuple[list[Example], dict[str, Any], str]:
    """Examples, metadata and kind of one BIG-bench ``task.json``."""
    examples_raw = raw.get("examples")
    if not isinstance(examples_raw, list) or not examples_raw:
        raise InputError(f"{where}: no 'examples' (a programmatic or parent-only task)")
    prefix = raw.get("task_prefix", "") or ""
    in_prefix = raw.get("example_input_prefix", "\nQ: ")
    out_prefix = raw.get("example_output_prefix", "\nA: ")
    choice_prefix = raw.get("choice_prefix", "\n  choice: ")
    append_choices = raw.get("append_choices_to_input", True)
    examples: list[Example] = []
    kinds: set[str] = set()
    for i, ex in enumerate(examples_raw):
        w = f"{where}: examples[{i}]"
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str):
            raise InputError(f"{w}: needs a string 'input'")
        scores = ex.get("target_scores")
        body = ex["input"]
        options: tuple[str, ...] | None = None
        answer: int | None = None
        if isinstance(scores, dict) and scores:
            options = tuple(str(k) for k in scores)
            values = [float(v) for v in scores.values()]
            answer = values.index(max(values))
            response = options[answer]
            if append_choices:
                body += "".join(f"{choice_prefix}{o}" for o in options)
            kinds.add("multiple_choice")
        else:
            response = _target(ex, w)
            kinds.add("generative")
        prompt = f"{prefix}{in_prefix}{body}{out_prefix}".lstrip("\n")
        examples.append(Example(example_id(prompt, response), prompt, response, options, answer))
    meta = {
        "canary": raw.get("canary", ""),
        "description": raw.get("description", ""),
        "keywords": raw.get("keywords", []),
        "preferred_score": raw.get("preferred_score", ""),
        "licence": "Apache-2.0 (BIG-bench); see the task's README for data sources",
    }
    kind = "multiple_choice" if kinds == {"multiple_choice"} else "generative"
    return examples, meta, kind


def build_bigbench_pool(
    task_names: Sequence[str],
    out: str | Path,
    *,
    heldout: Sequence[str] = (),
    split: SplitConfig | None = None,
    sdist: str | Path | None = None,
    cache: str | Path | None = None,
    max_examples: int | None = None,
) -> Pool:
    """A pool of the named BIG-bench tasks (``heldout`` ones get role ``heldout``)."""
    cfg = split or SplitConfig()
    cache_path = Path(cache) if cache else cache_dir()
    archive = Path(sdist) if sdist else ensure_sdist(cache_path)
    if not archive.is_file():
        raise InputError(f"{archive}: BIG-bench sdist not found")
    index = task_index(archive)
    train_keys = resolve_tasks(task_names, index)
    heldout_keys = resolve_tasks(heldout, index)
    paths = extract_tasks(archive, train_keys + heldout_keys, cache_path / "tasks")

    def tasks() -> list[TaskData]:
        out_tasks = []
        for key in train_keys + heldout_keys:
            raw = read_json(paths[key])
            examples, meta, kind = convert_task_json(raw, f"BIG-bench task {pool_name(key)}")
            if max_examples is not None:
                examples = examples[:max_examples]
            name = pool_name(key)
            splits, _report = split_task(name, {"train": examples}, cfg)
            role = "heldout" if key in heldout_keys else "train"
            if role == "heldout":  # never trained on: keep every example for probe/eval
                splits = {"probe": splits["probe"], "eval": splits["eval"] + splits["train"]}
            meta["bigbench_task"] = key
            out_tasks.append(TaskData(TaskInfo(name=name, source=f"bigbench:{key}", family=key.split("/")[0],
                                               role=role, kind=kind, metadata=meta), splits))  # type: ignore[arg-type]
        return out_tasks

    return write_pool(out, tasks(), {"importer": "bigbench", "version": BIGBENCH_VERSION})


__all__ = ["build_bigbench_pool", "convert_task_json", "default_suite"]
