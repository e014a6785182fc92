"""Exports of a materialised mixture for the trainers people use.

Each exporter writes into the sample directory while it is still being built (so a
failure leaves nothing) and returns the paths it wrote, relative to that directory.
Every export holds exactly the sample's examples: each task's count, no more, no less,
whatever the consumer's own mixing does with it. Paths inside the exported configs are
relative to the sample directory (so the directory gives the same bytes wherever it is
made and still works after it is moved): run the trainer from there, or prefix them.

* ``jsonl`` / ``messages``: ``train.jsonl`` itself, taskpgm's own format (raw prompt and
  response, or chat messages), read by ``taskpgm models train``. ``messages`` rows also
  carry TRL's conversational prompt-completion form (``prompt``: every message but the
  last, ``completion``: the last one, as in ``hf``), so that TRL's ``SFTTrainer`` given
  ``train.jsonl`` trains on the last assistant message only, as the experts are trained
  (with ``messages`` alone it would train on every token, prompt included).
* ``hf``: ``hf/``, a Hugging Face dataset (``save_to_disk``) in TRL's prompt-completion
  form (``task``, ``id``, ``prompt``, ``completion``), in sample order. Plain text
  (prompt + separator, completion) when no example is a chat; conversational (lists of
  ``{role, content}`` messages: everything but the last message, then the last one) for
  every row when any example is a chat, a plain example becoming one user turn, since a
  dataset cannot mix the two and TRL decides from its first row.
* ``llamafactory``: ``llamafactory/dataset_info.json``, one file per task with exactly
  its count (alpaca ``instruction``/``output`` for plain tasks, sharegpt ``messages`` for
  chat tasks) and ``llamafactory/mix.yaml`` with ``dataset_dir``, ``dataset`` and
  ``mix_strategy: concat`` (the files already hold the counts; the streaming alternative,
  ``interleave_once`` with probabilities that sum to exactly 1, is written as a comment).
* ``axolotl``: ``axolotl.yaml``, a ``datasets:`` block (plus the settings that keep the
  counts: no deduplication) over ``axolotl/prompt_response.jsonl`` (user-defined type:
  the prompt with its separator, loss on the response) and ``axolotl/chat.jsonl``
  (``type: chat_template``, loss on the last assistant message).
* ``interleave``: ``interleave.json`` and ``interleave/``, one file per task with exactly
  its count (rows as in ``hf``) and the arguments of ``datasets.interleave_datasets``
  that consume each file once: ``stopping_strategy: all_exhausted_without_replacement``
  and probabilities proportional to the counts (summing to exactly 1). The result has
  exactly the budget's examples (see :func:`load_interleaved`).

Plain prompts are written as the experts were trained on them: ``join_text`` puts the
separator (a newline by default) between a prompt and a response that would otherwise
run together (FLAN's ``- no`` + ``yes``).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from taskpgm.errors import InputError
from taskpgm.io import dumps_json
from taskpgm.models.prompt_format import DEFAULT_SEPARATOR, join_text

if TYPE_CHECKING:
    from taskpgm.sample import TaskSample

#: LLaMA-Factory's sharegpt tags for ``{role, content}`` messages.
LLAMAFACTORY_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"}
#: datasets' stopping strategy that reads every source exactly once.
ONCE = "all_exhausted_without_replacement"


def part_style(format: str) -> str:
    """How :func:`taskpgm.sample.materialise` writes its per-task part files for
    ``format``: ``full`` keeps a chat example's messages beside its flattened prompt."""
    if format == "messages":
        return "messages"
    return "prompt_response" if format == "jsonl" else "full"


def exact_probabilities(counts: Sequence[int]) -> list[float]:
    """``count / total`` per entry, the last set so that the left-to-right float sum is
    exactly 1.0 (``1 - s`` added back to ``s`` always rounds to 1.0)."""
    total = sum(counts)
    probs = [c / total for c in counts[:-1]]
    probs.append(1.0 - sum(probs))
    if sum(probs) != 1.0 or probs[-1] <= 0:  # pragma: no cover - guarded by the proof above
        raise AssertionError(f"probabilities {probs} do not sum to 1")
    return probs


def dataset_names(tasks: Sequence[str]) -> list[str]:
    """Names (and file stems) for the tasks that cannot collide: the task's position,
    then its name with anything but letters, digits, ``_``, ``.``, ``-`` replaced."""
    width = len(str(max(len(tasks) - 1, 0)))
    return [f"{i:0{width}d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', t)}" for i, t in enumerate(tasks)]


def _messages(rec: dict[str, Any]) -> list[dict[str, str]]:
    """A record's conversation as ``{role, content}`` messages (a plain example is one
    user turn and one assistant turn, without separator: a chat template separates)."""
    if "messages" in rec:
        return [{"role": m["role"], "content": m["content"]} for m in rec["messages"]]
    return [{"role": "user", "content": rec["prompt"]},
            {"role": "assistant", "content": rec["response"]}]


def _plain(rec: dict[str, Any], separator: str) -> tuple[str, str]:
    """Prompt (with the separator the experts train on) and response. A chat example's
    ``prompt`` is already flattened (``role: content`` lines ending ``assistant: ``)."""
    return join_text(rec["prompt"], rec["response"], separator), rec["response"]


def trl_record(rec: dict[str, Any], conversational: bool, separator: str) -> dict[str, Any]:
    """One row in TRL's prompt-completion form."""
    if conversational:
        msgs = _messages(rec)
        prompt: Any = msgs[:-1]
        completion: Any = msgs[-1:]
    else:
        prompt, completion = _plain(rec, separator)
    return {"task": rec["task"], "id": rec["id"], "prompt": prompt, "completion": completion}


def export_messages(data_dir: Path) -> list[str]:
    """Add TRL's conversational ``prompt``/``completion`` to every ``train.jsonl`` row
    (written in the ``messages`` style: each row has ``messages``). taskpgm reads
    ``messages`` (:meth:`taskpgm.tasks.pool.Example.from_record` takes it first); TRL reads
    ``prompt``/``completion`` first and then masks everything but the completion."""
    path = data_dir / "train.jsonl"
    tmp = data_dir / ".train.jsonl.messages"
    with open(path, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as out:
        for line in src:
            rec = json.loads(line)
            msgs = _messages(rec)
            rec["prompt"], rec["completion"] = msgs[:-1], msgs[-1:]
            out.write(_dumps(rec))
    tmp.replace(path)
    return []


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n"


def _read(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def _mixed(parts: dict[str, Path], rows: Sequence[TaskSample],
           order: np.ndarray) -> Iterator[dict[str, Any]]:
    """The sample's records in ``train.jsonl`` order (``order``: row index per line)."""
    with ExitStack() as stack:
        readers = [stack.enter_context(open(parts[r.task], encoding="utf-8")).readline
                   for r in rows]
        for i in order.tolist():
            yield json.loads(readers[i]())


def _any_chat(parts: dict[str, Path], rows: Sequence[TaskSample]) -> bool:
    return any(_task_is_chat(parts[r.task]) for r in rows)


def _task_is_chat(path: Path) -> bool:
    return any("messages" in rec for rec in _read(path))


def _trl_features(datasets: Any, conversational: bool) -> Any:
    text = datasets.Value("string")
    column = [{"content": text, "role": text}] if conversational else text
    return datasets.Features({"task": text, "id": text, "prompt": column, "completion": column})


def _trl_generator(parts: dict[str, Path], rows: Sequence[TaskSample], order: np.ndarray,
                   conversational: bool, separator: str) -> Iterator[dict[str, Any]]:
    for rec in _mixed(parts, rows, order):
        yield trl_record(rec, conversational, separator)


def export_hf(data_dir: Path, parts: dict[str, Path], rows: Sequence[TaskSample],
              order: np.ndarray, *, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - optional extra
        raise InputError("--format hf needs the datasets library: pip install datasets") from None
    import hashlib
    import inspect

    conversational = _any_chat(parts, rows)
    features = _trl_features(datasets, conversational)
    cache = Path(tempfile.mkdtemp(prefix=".hf-cache.", dir=data_dir))
    kwargs: dict[str, Any] = {}
    if "fingerprint" in inspect.signature(datasets.Dataset.from_generator).parameters:
        # The default fingerprint hashes the temporary cache path: same sample, other bytes.
        digest = hashlib.sha256()
        for r in rows:
            digest.update(r.task.encode() + b"\0")
            with open(parts[r.task], "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(chunk)
        digest.update(order.astype("<i4").tobytes() + separator.encode()
                      + str(conversational).encode())
        kwargs["fingerprint"] = digest.hexdigest()[:16]
    # datasets' own progress bars would print over ours (and into logs); silence them.
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        ds = datasets.Dataset.from_generator(
            _trl_generator, features=features, cache_dir=str(cache),
            gen_kwargs={"parts": parts, "rows": tuple(rows), "order": order,  # a list would be sharded
                        "conversational": conversational, "separator": separator},
            **kwargs,
        )
        ds.save_to_disk(str(data_dir / "hf"))
        del ds
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
        shutil.rmtree(cache, ignore_errors=True)
    return ["hf"]


def _sharegpt_ok(msgs: Sequence[dict[str, str]]) -> bool:
    """LLaMA-Factory's sharegpt converter drops (silently) a conversation that is not:
    an optional system message, then user/assistant turns alternating, assistant last."""
    roles = [m["role"] for m in msgs]
    if roles and roles[0] == "system":
        roles = roles[1:]
    return (len(roles) % 2 == 0 and len(roles) > 0
            and all(r == ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles)))


def export_llamafactory(data_dir: Path, parts: dict[str, Path], rows: Sequence[TaskSample],
                        *, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    dest = data_dir / "llamafactory"
    dest.mkdir()
    info: dict[str, Any] = {}
    names = dataset_names([r.task for r in rows])
    for row, name in zip(rows, names, strict=True):
        fname = f"{name}.jsonl"
        chat = _task_is_chat(parts[row.task])
        with open(dest / fname, "w", encoding="utf-8") as out:
            for rec in _read(parts[row.task]):
                if chat:
                    msgs = _messages(rec)
                    if not _sharegpt_ok(msgs):
                        raise InputError(
                            f"--format llamafactory: task {row.task!r} example {rec['id']!r}: "
                            "LLaMA-Factory's sharegpt format takes an optional system message "
                            "then user/assistant turns alternating, assistant last (it would "
                            f"drop this one: roles {[m['role'] for m in msgs]}); use --format "
                            "hf, axolotl or messages")
                    out.write(_dumps({"task": rec["task"], "id": rec["id"], "messages": msgs}))
                else:
                    prompt, response = _plain(rec, separator)
                    out.write(_dumps({"task": rec["task"], "id": rec["id"],
                                      "instruction": prompt, "output": response}))
        if chat:
            info[name] = {"file_name": fname, "formatting": "sharegpt",
                          "columns": {"messages": "messages"}, "tags": dict(LLAMAFACTORY_TAGS)}
        else:
            info[name] = {"file_name": fname, "formatting": "alpaca",
                          "columns": {"prompt": "instruction", "response": "output"}}
    (dest / "dataset_info.json").write_text(dumps_json(info), encoding="utf-8")
    probs = exact_probabilities([r.count for r in rows])
    args: dict[str, Any] = {"dataset_dir": "llamafactory", "dataset": ",".join(names),
                            "mix_strategy": "concat"}
    if any(e["formatting"] == "sharegpt" for e in info.values()):
        args["mask_history"] = True  # loss on the last turn only, as the experts
    mix = (
        "# LLaMA-Factory data arguments for this sample: merge them into the training YAML.\n"
        "# dataset_dir is relative to the sample directory (run from there, or make it\n"
        "# absolute). Each task's file holds exactly its count, so `concat` reproduces the\n"
        "# mixture (the trainer shuffles). For streaming, interleave_once reads each file\n"
        "# exactly once (interleave_under/over would resample):\n"
        "#   streaming: true\n"
        "#   mix_strategy: interleave_once\n"
        f"#   interleave_probs: {','.join(repr(p) for p in probs)}\n"
        "# Chat tasks are sharegpt entries (the model's template formats them); plain tasks\n"
        "# are alpaca entries whose instruction ends with the experts' separator, so\n"
        "# `template: empty` trains on exactly the experts' text.\n"
        + yaml.safe_dump(args, sort_keys=False, width=10**9)
    )
    (dest / "mix.yaml").write_text(mix, encoding="utf-8")
    return ["llamafactory"]


def export_axolotl(data_dir: Path, parts: dict[str, Path], rows: Sequence[TaskSample],
                   order: np.ndarray, *, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    dest = data_dir / "axolotl"
    dest.mkdir()
    n_plain = n_chat = 0
    with open(dest / "prompt_response.jsonl", "w", encoding="utf-8") as plain, \
            open(dest / "chat.jsonl", "w", encoding="utf-8") as chat:
        for rec in _mixed(parts, rows, order):
            if "messages" in rec:
                msgs = _messages(rec)
                # Loss on the last message only, as the experts are trained.
                for i, m in enumerate(msgs):
                    m["train"] = i == len(msgs) - 1
                chat.write(_dumps({"task": rec["task"], "id": rec["id"], "messages": msgs}))
                n_chat += 1
            else:
                prompt, response = _plain(rec, separator)
                plain.write(_dumps({"task": rec["task"], "id": rec["id"], "prompt": prompt,
                                    "response": response}))
                n_plain += 1
    entries: list[dict[str, Any]] = []
    if n_plain:
        entries.append({
            "path": "axolotl/prompt_response.jsonl", "ds_type": "json", "split": "train",
            "type": {"field_instruction": "prompt", "field_output": "response",
                     "format": "{instruction}", "no_input_format": "{instruction}"},
        })
    else:
        (dest / "prompt_response.jsonl").unlink()
    if n_chat:
        entries.append({
            "path": "axolotl/chat.jsonl", "ds_type": "json", "split": "train",
            "type": "chat_template", "field_messages": "messages",
            "message_property_mappings": {"role": "role", "content": "content"},
            "message_field_training": "train", "roles_to_train": ["assistant"],
        })
    else:
        (dest / "chat.jsonl").unlink()
    block = {"datasets": entries, "train_on_inputs": False, "shuffle_merged_datasets": True,
             "dataset_exact_deduplication": False}
    header = (
        "# axolotl settings for this sample: merge them into the training YAML. Paths are\n"
        "# relative to the sample directory (run axolotl from there, or make them absolute).\n"
        "# The files hold exactly the sample (repeated epochs included: keep deduplication\n"
        "# off); rows longer than sequence_len are dropped by axolotl unless\n"
        "# excess_length_strategy says otherwise. Chat rows use the tokenizer's chat template\n"
        "# (set chat_template if it has none, eot_tokens if its turn end is not EOS).\n"
    )
    (data_dir / "axolotl.yaml").write_text(
        header + yaml.safe_dump(block, sort_keys=False, width=10**9), encoding="utf-8")
    return ["axolotl", "axolotl.yaml"]


def export_interleave(data_dir: Path, parts: dict[str, Path], rows: Sequence[TaskSample],
                      seed: int, *, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    dest = data_dir / "interleave"
    dest.mkdir()
    conversational = _any_chat(parts, rows)
    names = dataset_names([r.task for r in rows])
    for row, name in zip(rows, names, strict=True):
        with open(dest / f"{name}.jsonl", "w", encoding="utf-8") as out:
            out.writelines(_dumps(trl_record(rec, conversational, separator))
                           for rec in _read(parts[row.task]))
    spec = {
        "tasks": [r.task for r in rows],
        "counts": [r.count for r in rows],
        "data_files": [f"interleave/{n}.jsonl" for n in names],
        "probabilities": exact_probabilities([r.count for r in rows]),
        "seed": seed,
        "stopping_strategy": ONCE,
    }
    (data_dir / "interleave.json").write_text(dumps_json(spec), encoding="utf-8")
    return ["interleave", "interleave.json"]


def export(
    format: str,
    data_dir: Path,
    *,
    parts: dict[str, Path],
    rows: Sequence[TaskSample],
    order: np.ndarray,
    seed: int,
    separator: str = DEFAULT_SEPARATOR,
) -> list[str]:
    """Write ``format``'s files into ``data_dir`` (train.jsonl is already there).

    ``parts``: each active task's examples (written in :func:`part_style`), ``rows``: the
    active tasks, ``order``: for each line of train.jsonl, the index of its task in rows.
    """
    if not isinstance(separator, str):
        raise InputError(f"separator must be a string, got {separator!r}")
    if format == "jsonl":
        return []
    if format == "messages":
        return export_messages(data_dir)
    if format == "hf":
        return export_hf(data_dir, parts, rows, order, separator=separator)
    if format == "llamafactory":
        return export_llamafactory(data_dir, parts, rows, separator=separator)
    if format == "axolotl":
        return export_axolotl(data_dir, parts, rows, order, separator=separator)
    if format == "interleave":
        return export_interleave(data_dir, parts, rows, seed, separator=separator)
    raise InputError(f"unknown format {format!r}")


def load_interleaved(spec_path: str | Path) -> Any:
    """The mixture an ``interleave.json`` describes, built as a consumer would with
    ``datasets.interleave_datasets`` (needs datasets): exactly each task's count."""
    import datasets

    spec_path = Path(spec_path)
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    parts = [datasets.load_dataset("json", data_files=str(spec_path.parent / f), split="train")
             for f in spec["data_files"]]
    try:
        return datasets.interleave_datasets(parts, probabilities=spec["probabilities"],
                                            seed=spec["seed"],
                                            stopping_strategy=spec["stopping_strategy"])
    except ValueError as exc:
        if spec["stopping_strategy"] in str(exc):
            raise InputError(f"datasets {datasets.__version__} has no stopping strategy "
                             f"{spec['stopping_strategy']!r}: upgrade datasets") from None
        raise
