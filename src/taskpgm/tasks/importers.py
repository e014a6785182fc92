"""Import task pools from the formats people hold their data in.

* A JSONL file (one example per line) or a JSON file (a list of examples, or the
  reference ``{"train": [...], "validation": [...]}`` form, or a BIG-bench
  ``task.json``) is one task, named after the file.
* A directory of such files: one task per file, named by its path under the directory;
  files named after a split (``qa/train.jsonl`` + ``qa/test.jsonl``) are the splits of
  one task named after their folder (``qa``).
* A taskpgm pool directory: task by task, keeping splits, roles and families.
* A Hugging Face dataset saved with ``save_to_disk``: a task column splits it into
  tasks, and a column mapping says which columns hold the prompt and the response.

Examples may use ``prompt``/``response``, ``inputs``/``targets``, ``input``/``output``,
``instruction``/``input``/``output`` (Alpaca) or chat ``messages``; a line may carry a
``split`` field (train / validation / test / ...).

Family labels (``TaskInfo.family``, what family-balanced mixing groups by) come from a
regular expression on task names (``family_pattern``: its first group, or the whole
match; a name it does not match is a family of its own) or from a field of the records
(``family_field``: every row of a task must name the same family). Without either,
imported files carry no family, and tasks from a taskpgm pool keep theirs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskpgm.errors import InputError
from taskpgm.io import iter_jsonl, read_json
from taskpgm.tasks.pool import SPLITS, Example, Pool, TaskInfo
from taskpgm.tasks.splits import SPLIT_ALIASES, SplitConfig, SplitReport, example_id, split_task
from taskpgm.tasks.writer import TaskData, write_pool

# (prompt field, response field) pairs tried in order when no mapping is given.
FIELD_PAIRS: tuple[tuple[str, str], ...] = (
    ("prompt", "response"),
    ("inputs", "targets"),
    ("input", "target"),
    ("input", "output"),
    ("question", "answer"),
    ("source", "target"),
)
SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class ColumnMap:
    """Which fields hold the prompt and response (None: guess from FIELD_PAIRS)."""

    prompt: str | None = None
    response: str | None = None
    options: str | None = None
    answer: str | None = None


@dataclass
class ImportResult:
    pool: Pool
    report: SplitReport


# -- family labels ------------------------------------------------------------------------


def compile_family_pattern(pattern: str, option: str = "family_pattern") -> re.Pattern[str]:
    """Compile a family pattern; an invalid one is one :class:`InputError` line.

    ``option`` names where the pattern came from (``--family-pattern``,
    ``pool.family_pattern``) in the message.
    """
    if not isinstance(pattern, str) or not pattern:
        raise InputError(f"{option}: expected a non-empty regular expression")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InputError(
            f"{option} {pattern!r} is not a valid regular expression: {exc}"
        ) from None


def family_of(name: str, pattern: re.Pattern[str]) -> str | None:
    """The family ``pattern`` gives task ``name`` (first group, else the whole match).

    ``None`` when it does not match (or captures only an empty string).
    """
    m = pattern.search(name)
    if m is None:
        return None
    label = m.group(1) if pattern.groups else m.group(0)
    return label or None


def families_from_pattern(names: Iterable[str], pattern: re.Pattern[str]) -> dict[str, str]:
    """Each task's family; unmatched names are their own family.

    A pattern that matches no name at all is an error: almost certainly a typo.
    """
    names = list(names)
    out: dict[str, str] = {}
    matched = False
    for name in names:
        label = family_of(name, pattern)
        matched = matched or label is not None
        out[name] = label if label is not None else name
    if names and not matched:
        raise InputError(
            f"family pattern {pattern.pattern!r} matches none of the {len(names)} task "
            f"names (e.g. {names[0]!r}); check the pattern"
        )
    return out


class FamilyField:
    """The family one field names in every row of one task; the rows must agree."""

    def __init__(self, field: str, task: str):
        self.field, self.task = field, task
        self.value: str | None = None
        self.first: str = ""

    def see(self, rec: dict[str, Any], where: str) -> None:
        if rec.get(self.field) is None:
            raise InputError(f"{where}: missing family field {self.field!r}")
        raw = rec[self.field]
        if isinstance(raw, bool) or not isinstance(raw, (str, int)) or raw == "":
            raise InputError(
                f"{where}: family field {self.field!r} must be a non-empty string"
            )
        label = str(raw)
        if self.value is None:
            self.value, self.first = label, where
        elif label != self.value:
            raise InputError(
                f"{where}: task {self.task!r} has family field {self.field!r} = {label!r}, "
                f"but {self.first} says {self.value!r} (all rows of a task must agree)"
            )


def _family_options(
    family_pattern: str | re.Pattern[str] | None, family_field: str | None
) -> re.Pattern[str] | None:
    """Check the family options before anything is read or written."""
    if family_pattern is not None and family_field is not None:
        raise InputError("give either family_pattern or family_field, not both")
    if family_field is not None and (not isinstance(family_field, str) or not family_field):
        raise InputError("family_field: expected a field name")
    if family_pattern is None or isinstance(family_pattern, re.Pattern):
        return family_pattern
    return compile_family_pattern(family_pattern)


def _family_metadata(
    pattern: re.Pattern[str] | None, family_field: str | None
) -> dict[str, str]:
    if pattern is not None:
        return {"family_pattern": pattern.pattern}
    if family_field is not None:
        return {"family_field": family_field}
    return {}


def _text(value: Any, where: str, field: str) -> str:
    # Reference-format targets are often a one-element list.
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InputError(f"{where}: field {field!r} must be a string")
    return value


def parse_record(rec: dict[str, Any], where: str, cols: ColumnMap) -> Example:
    """Turn one source record into an Example; every error names ``where``."""
    if "messages" in rec and cols.prompt is None:
        rec = dict(rec)
        rec.setdefault("id", "")
        ex = Example.from_record(rec, where)
        return ex if ex.id else _with_id(ex)
    if cols.prompt is not None:
        pairs: Sequence[tuple[str, str]] = ((cols.prompt, cols.response or "response"),)
    elif "instruction" in rec and "output" in rec:  # Alpaca: instruction + optional input
        extra = rec.get("input") or ""
        prompt = _text(rec["instruction"], where, "instruction")
        if extra:
            prompt += "\n" + _text(extra, where, "input")
        return _finish(rec, prompt, _text(rec["output"], where, "output"), where, cols)
    else:
        pairs = FIELD_PAIRS
    for p_field, r_field in pairs:
        if p_field in rec and r_field in rec:
            prompt = _text(rec[p_field], where, p_field)
            response = _text(rec[r_field], where, r_field)
            return _finish(rec, prompt, response, where, cols)
    if cols.prompt is not None:
        missing = cols.prompt if cols.prompt not in rec else cols.response or "response"
        raise InputError(f"{where}: missing field {missing!r}")
    raise InputError(
        f"{where}: missing fields: need 'prompt' and 'response' (or inputs/targets, "
        "input/output, messages)"
    )


def _finish(
    rec: dict[str, Any], prompt: str, response: str, where: str, cols: ColumnMap
) -> Example:
    opt_field, ans_field = cols.options or "options", cols.answer or "answer"
    out: dict[str, Any] = {"id": rec.get("id", ""), "prompt": prompt, "response": response}
    options = rec.get(opt_field)
    if options is not None:
        out["options"] = options
        answer = rec.get(ans_field)
        if isinstance(answer, str) and isinstance(options, list) and answer in options:
            answer = options.index(answer)
        out["answer"] = answer
        if isinstance(answer, int) and isinstance(options, list) and 0 <= answer < len(options):
            out["response"] = options[answer]
    ex = Example.from_record(out, where)
    return ex if ex.id else _with_id(ex)


def _with_id(ex: Example) -> Example:
    return Example(example_id(ex.prompt, ex.response), ex.prompt, ex.response,
                   ex.options, ex.answer, ex.messages)


def _split_of(rec: dict[str, Any], where: str, default: str) -> str:
    raw = rec.get("split", default)
    split = SPLIT_ALIASES.get(str(raw).lower())
    if split is None:
        raise InputError(f"{where}: field 'split' has unknown value {raw!r}")
    return split


def read_task_file(
    path: Path, cols: ColumnMap, split: str | None = None, *, family: FamilyField | None = None
) -> tuple[dict[str, list[Example]], dict[str, Any]]:
    """Read one task file: examples per pool split, plus metadata for pool.json.

    ``split``: the pool split the whole file belongs to (a file named ``test.jsonl``,
    say); ``None`` means train unless a row's ``split`` field says otherwise.
    ``family``: when given, every row's family field is checked into it.
    """
    given: dict[str, list[Example]] = {}
    meta: dict[str, Any] = {}
    if path.suffix == ".jsonl":
        for lineno, rec in iter_jsonl(path):
            where = f"{path}:{lineno}"
            if family is not None:
                family.see(rec, where)
            given.setdefault(_split_of(rec, where, split or "train"), []).append(
                parse_record(rec, where, cols)
            )
        return given, meta
    raw = read_json(path)
    if isinstance(raw, dict) and "examples" in raw:  # a BIG-bench task.json
        from taskpgm.tasks.bigbench import convert_task_json

        examples, meta, _kind = convert_task_json(raw, str(path))
        if family is not None:
            for i, rec in enumerate(raw["examples"]):
                family.see(rec, f"{path}: examples[{i}]")
        return {split or "train": examples}, meta
    if isinstance(raw, list):
        raw = {split or "train": raw}
    elif split is not None and isinstance(raw, dict):
        raise InputError(f"{path}: a file named after split {split!r} must hold a list of "
                         "examples, not an object of splits")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a list of examples or an object of splits")
    for split_name, records in raw.items():
        split = SPLIT_ALIASES.get(split_name.lower())
        if split is None:
            raise InputError(f"{path}: unknown split {split_name!r} (use train/validation/test)")
        if not isinstance(records, list):
            raise InputError(f"{path}: split {split_name!r} must be a list of examples")
        for i, rec in enumerate(records):
            where = f"{path}: {split_name}[{i}]"
            if not isinstance(rec, dict):
                raise InputError(f"{where}: expected a JSON object")
            if family is not None:
                family.see(rec, where)
            given.setdefault(split, []).append(parse_record(rec, where, cols))
    return given, meta


def task_name_for(rel: Path) -> str:
    """A path-safe task name from a file's path relative to the import root."""
    stem = str(rel.with_suffix("")).replace("/", ".")
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", stem).lstrip("._-")
    return name or "task"


def _kind(examples: Iterable[Example]) -> str:
    return "multiple_choice" if any(e.options is not None for e in examples) else "generative"


@dataclass
class TaskSource:
    """One task to import: its files (each with the split its name gives, if any)."""

    name: str
    files: list[tuple[Path, str | None]]
    info: TaskInfo | None = None  # from a taskpgm pool: role, family, kind, metadata


def _split_from_name(path: Path) -> str | None:
    return SPLIT_ALIASES.get(path.stem.lower())


def _pool_sources(src: Path) -> list[TaskSource] | None:
    """A taskpgm pool directory imports task by task, keeping roles and families."""
    manifest = src / "pool.json"
    if not manifest.is_file():
        return None
    raw = read_json(manifest)
    if not (isinstance(raw, dict) and raw.get("format") == "taskpgm-pool"):
        return None
    pool = Pool.load(src)
    out = []
    for info in pool.tasks:
        files = [(pool.split_path(info.name, s), s) for s in SPLITS
                 if pool.split_path(info.name, s).is_file()]
        out.append(TaskSource(info.name, files, info))
    return out


def task_files(root: Path) -> list[Path]:
    """The .jsonl/.json files under ``root``, sorted, following symlinked directories.

    A symlinked directory of task files is imported like a real one (named by its path
    under ``root``); a link that loops back to a directory above it, or a task file that
    is a broken link, is refused with one line rather than skipped.
    """
    found: list[Path] = []

    def walk(folder: Path, above: tuple[str, ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise InputError(f"{folder}: cannot read directory "
                             f"({exc.strerror or exc})") from None
        for entry in entries:
            path = folder / entry.name
            if entry.is_dir():  # follows symlinks
                real = os.path.realpath(path)
                if real in above:
                    raise InputError(f"{path}: symbolic link loop (it points to {real}, "
                                     "a directory that contains it)")
                walk(path, (*above, real))
            elif path.suffix in SUFFIXES:
                if entry.is_file():
                    found.append(path)
                elif entry.is_symlink() and not path.exists():
                    raise InputError(f"{path}: broken symbolic link (points to "
                                     f"{os.readlink(path)}, which does not exist)")

    walk(root, (os.path.realpath(root),))
    return sorted(found)


def discover_tasks(sources: Sequence[str | Path]) -> list[TaskSource]:
    """Expand files and directories into tasks, sorted within a directory.

    In a directory, files named after a split (``train.jsonl``, ``test.jsonl``,
    ``validation.json`` ...) are the splits of one task named after their folder
    (``data/qa/train.jsonl`` + ``data/qa/test.jsonl`` -> task ``qa``); any other file is
    a task of its own, named by its path. A taskpgm pool directory is imported task by
    task with its splits, roles and families.
    """
    found: list[TaskSource] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            pool_tasks = _pool_sources(src)
            if pool_tasks is not None:
                found.extend(pool_tasks)
                continue
            files = task_files(src)
            if not files:
                raise InputError(f"{src}: no .jsonl or .json files in this directory")
            grouped: dict[str, TaskSource] = {}
            for p in files:
                split = _split_from_name(p)
                if split is None:
                    name = task_name_for(p.relative_to(src))
                else:
                    folder = p.parent.relative_to(src)
                    # The directory's name as given (a symlink keeps its own name).
                    name = task_name_for(folder) if str(folder) != "." else task_name_for(
                        Path(Path(os.path.abspath(src)).name or src.resolve().name))
                entry = grouped.setdefault(name, TaskSource(name, []))
                entry.files.append((p, split))
            for entry in grouped.values():
                splits = [s for _, s in entry.files]
                if None in splits and len(splits) > 1:
                    raise InputError(
                        f"task name {entry.name!r} comes from both "
                        f"{' and '.join(str(p) for p, _ in entry.files)}; rename one"
                    )
                seen_split: dict[str, Path] = {}
                for p, s in entry.files:
                    if s is not None and s in seen_split:
                        raise InputError(f"{p}: task {entry.name!r} already has a {s} split "
                                         f"from {seen_split[s]}")
                    if s is not None:
                        seen_split[s] = p
            found.extend(grouped.values())
        elif src.is_file():
            if src.suffix not in SUFFIXES:
                raise InputError(f"{src}: expected a .jsonl or .json file")
            found.append(TaskSource(task_name_for(Path(src.name)), [(src, None)]))
        else:
            raise InputError(f"{src}: file not found")
    return found


def discover(sources: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(task name, file) pairs, one per file (see :func:`discover_tasks`)."""
    return [(t.name, p) for t in discover_tasks(sources) for p, _ in t.files]


def import_files(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    split: SplitConfig | None = None,
    columns: ColumnMap | None = None,
    role: str = "train",
    family_pattern: str | re.Pattern[str] | None = None,
    family_field: str | None = None,
) -> ImportResult:
    """Import JSONL/JSON files (or directories of them) as a pool at ``out``.

    ``family_pattern`` / ``family_field``: where each task's family label comes from
    (see the module docstring); with either, every task in pool.json has a family.
    """
    cfg, cols = split or SplitConfig(), columns or ColumnMap()
    pattern = _family_options(family_pattern, family_field)
    report = SplitReport()
    seen: dict[str, Path] = {}
    found = discover_tasks(sources)
    by_pattern = (families_from_pattern([t.name for t in found], pattern)
                  if pattern is not None else {})

    def tasks() -> Iterable[TaskData]:
        for src in found:
            name, path = src.name, src.files[0][0]
            where = path if len(src.files) == 1 else path.parent
            if name in seen:
                raise InputError(f"duplicate task name {name!r}: {seen[name]} and {where}")
            seen[name] = where
            given: dict[str, list[Example]] = {}
            meta: dict[str, Any] = {}
            by_field = FamilyField(family_field, name) if family_field is not None else None
            for file, file_split in src.files:
                file_given, file_meta = read_task_file(file, cols, file_split, family=by_field)
                for s, exs in file_given.items():
                    given.setdefault(s, []).extend(exs)
                meta.update(file_meta)
            if not any(given.values()):
                raise InputError(f"{where}: task {name!r} is empty")
            splits, rep = split_task(name, given, cfg)
            report.add(rep)
            examples = [e for s in splits.values() for e in s]
            if src.info is not None:
                info = src.info.model_copy(update={"kind": _kind(examples), "counts": {}})
            else:
                info = TaskInfo(name=name, source=str(where), role=role,  # type: ignore[arg-type]
                                kind=_kind(examples), metadata=meta)  # type: ignore[arg-type]
            family = by_field.value if by_field is not None else by_pattern.get(name)
            if family is not None:
                info = info.model_copy(update={"family": family})
            yield TaskData(info, splits)

    pool = write_pool(out, tasks(), {"importer": "files", "split": cfg.__dict__,
                                     **_family_metadata(pattern, family_field)})
    return ImportResult(pool, report)


def is_hf_dataset_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and any(
        (p / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json")
    )


def import_hf_dataset(
    path: str | Path,
    out: str | Path,
    *,
    task_column: str | None = None,
    columns: ColumnMap | None = None,
    split: SplitConfig | None = None,
    task_name: str | None = None,
    family_pattern: str | re.Pattern[str] | None = None,
    family_field: str | None = None,
) -> ImportResult:
    """Import a dataset saved with ``save_to_disk``; ``task_column`` divides it into tasks.

    ``family_pattern`` applies to the task names; ``family_field`` names a column whose
    value every row of a task must share.
    """
    pattern = _family_options(family_pattern, family_field)
    try:
        import datasets
    except ImportError:  # pragma: no cover - optional extra
        raise InputError("importing a Hugging Face dataset needs: pip install datasets") from None
    cfg, cols = split or SplitConfig(), columns or ColumnMap()
    path = Path(path)
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"{path}: not a dataset saved with save_to_disk ({exc})") from None
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    per_task: dict[str, dict[str, list[Example]]] = {}
    per_family: dict[str, FamilyField] = {}
    for split_name, ds in parts.items():
        pool_split = SPLIT_ALIASES.get(split_name.lower())
        if pool_split is None:
            raise InputError(f"{path}: unknown split {split_name!r} (use train/validation/test)")
        if task_column is not None and task_column not in ds.column_names:
            raise InputError(
                f"{path}: split {split_name!r} has no column {task_column!r} "
                f"(columns: {', '.join(ds.column_names)})"
            )
        if family_field is not None and family_field not in ds.column_names:
            raise InputError(
                f"{path}: split {split_name!r} has no family column {family_field!r} "
                f"(columns: {', '.join(ds.column_names)})"
            )
        for i, rec in enumerate(ds):
            where = f"{path}: {split_name} row {i}"
            name = str(rec[task_column]) if task_column else (task_name or path.name)
            if family_field is not None:
                per_family.setdefault(name, FamilyField(family_field, task_name_for(Path(name))))
                per_family[name].see(rec, where)
            ex = parse_record(rec, where, cols)
            per_task.setdefault(name, {}).setdefault(pool_split, []).append(ex)
    report = SplitReport()
    by_pattern = (families_from_pattern([task_name_for(Path(n)) for n in sorted(per_task)],
                                        pattern) if pattern is not None else {})

    def tasks() -> Iterable[TaskData]:
        for raw_name in sorted(per_task):
            name = task_name_for(Path(raw_name))
            splits, rep = split_task(name, per_task[raw_name], cfg)
            report.add(rep)
            examples = [e for s in splits.values() for e in s]
            family = (per_family[raw_name].value if family_field is not None
                      else by_pattern.get(name))
            yield TaskData(TaskInfo(name=name, source=f"{path}#{raw_name}", family=family,
                                    kind=_kind(examples)), splits)  # type: ignore[arg-type]

    pool = write_pool(out, tasks(), {"importer": "hf", "split": cfg.__dict__,
                                     **_family_metadata(pattern, family_field)})
    return ImportResult(pool, report)


def import_sources(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    family_pattern: str | re.Pattern[str] | None = None,
    family_field: str | None = None,
    **kwargs: Any,
) -> ImportResult:
    """Dispatch: a single saved HF dataset directory, else JSONL/JSON files.

    ``family_pattern`` (a regex on task names) or ``family_field`` (a field of the
    records) labels every task with a family; the two exclude each other.
    """
    pattern = _family_options(family_pattern, family_field)
    if len(sources) == 1 and is_hf_dataset_dir(sources[0]):
        return import_hf_dataset(sources[0], out, family_pattern=pattern,
                                 family_field=family_field, **kwargs)
    hf = next((s for s in sources if is_hf_dataset_dir(s)), None)
    if hf is not None:
        raise InputError(f"{hf}: a dataset saved with save_to_disk is imported on its own "
                         "(its tasks come from task_column); import it alone, or export it to "
                         "JSONL first to mix it with files")
    if kwargs.pop("task_column", None) is not None:
        raise InputError("task_column applies to a dataset saved with save_to_disk; with "
                         "JSONL/JSON files each file (or directory) is a task")
    return import_files(sources, out, family_pattern=pattern, family_field=family_field,
                        **kwargs)


__all__ = [
    "ColumnMap",
    "FamilyField",
    "ImportResult",
    "TaskSource",
    "compile_family_pattern",
    "discover_tasks",
    "families_from_pattern",
    "family_of",
    "import_files",
    "import_hf_dataset",
    "import_sources",
    "parse_record",
]
