"""Exports of a materialised mixture for the trainers people use.

Each exporter writes into the sample directory (while it is still being built) and
returns the paths it wrote, relative to that directory:

* ``jsonl`` / ``messages``: ``train.jsonl`` itself (prompt/response or chat messages).
* ``hf``: a Hugging Face dataset (``save_to_disk``) in ``hf/``.
* ``llamafactory``: ``llamafactory/dataset_info.json``, one data file per task, and
  ``llamafactory/mix.yaml`` with the ``dataset`` / ``mix_strategy`` /
  ``interleave_probs`` lines for LLaMA-Factory's streaming mixing.
* ``axolotl``: ``axolotl.yaml`` holding the ``datasets:`` block over ``train.jsonl``.
* ``interleave``: ``interleave.json``: each task's pool train file and the mixture's
  probabilities, for ``datasets.interleave_datasets``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from taskpgm.errors import InputError
from taskpgm.io import dumps_json

if TYPE_CHECKING:
    from taskpgm.sample import TaskSample
    from taskpgm.tasks.pool import Pool


def _probabilities(rows: Sequence[TaskSample]) -> list[float]:
    total = sum(r.count for r in rows)
    return [r.count / total for r in rows]


def _flat_records(path: Path) -> Iterator[dict[str, Any]]:
    """train.jsonl rows as task/id/prompt/response (chat rows flattened)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if "messages" in rec:
                msgs = rec["messages"]
                prompt = "".join(f"{m['role']}: {m['content']}\n" for m in msgs[:-1])
                rec = {"task": rec["task"], "id": rec["id"], "prompt": prompt + "assistant: ",
                       "response": msgs[-1]["content"]}
            yield {"task": rec["task"], "id": rec["id"], "prompt": rec["prompt"],
                   "response": rec["response"]}


def export_hf(data_dir: Path) -> list[str]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - optional extra
        raise InputError("--format hf needs the datasets library: pip install datasets") from None
    features = datasets.Features({k: datasets.Value("string")
                                  for k in ("task", "id", "prompt", "response")})
    cache = Path(tempfile.mkdtemp(prefix=".hf-cache.", dir=data_dir))
    # datasets' own progress bars would print over ours (and into logs); silence them.
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        ds = datasets.Dataset.from_generator(
            _flat_records, gen_kwargs={"path": data_dir / "train.jsonl"}, features=features,
            cache_dir=str(cache),
        )
        ds.save_to_disk(str(data_dir / "hf"))
        del ds
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
        shutil.rmtree(cache, ignore_errors=True)
    return ["hf"]


def export_llamafactory(data_dir: Path, parts: dict[str, Path], rows: Sequence[TaskSample]) -> list[str]:
    dest = data_dir / "llamafactory"
    dest.mkdir()
    info: dict[str, Any] = {}
    for row in rows:
        fname = f"{row.task}.jsonl"
        with open(parts[row.task], encoding="utf-8") as src, open(dest / fname, "w",
                                                                    encoding="utf-8") as out:
            for line in src:
                rec = json.loads(line)
                if "messages" in rec:
                    msgs = rec["messages"]
                    rec["prompt"] = "".join(f"{m['role']}: {m['content']}\n" for m in msgs[:-1])
                    rec["response"] = msgs[-1]["content"]
                out.write(json.dumps({"prompt": rec["prompt"], "response": rec["response"]},
                                     ensure_ascii=False) + "\n")
        info[row.task] = {"file_name": fname, "formatting": "alpaca",
                          "columns": {"prompt": "prompt", "response": "response"}}
    (dest / "dataset_info.json").write_text(dumps_json(info), encoding="utf-8")
    probs = _probabilities(rows)
    mix = (
        f"dataset: {','.join(r.task for r in rows)}\n"
        "mix_strategy: interleave_under\n"
        f"interleave_probs: {','.join(f'{p:.6f}' for p in probs)}\n"
    )
    (dest / "mix.yaml").write_text(mix, encoding="utf-8")
    return ["llamafactory"]


def export_axolotl(data_dir: Path, final_dir: Path) -> list[str]:
    block = {
        "datasets": [
            {
                "path": str(final_dir / "train.jsonl"),
                "ds_type": "json",
                "split": "train",
                "type": {
                    "field_instruction": "prompt",
                    "field_output": "response",
                    "format": "{instruction}",
                    "no_input_format": "{instruction}",
                },
            }
        ]
    }
    (data_dir / "axolotl.yaml").write_text(yaml.safe_dump(block, sort_keys=False), encoding="utf-8")
    return ["axolotl.yaml"]


def export_interleave(data_dir: Path, rows: Sequence[TaskSample], pool: Pool, seed: int) -> list[str]:
    spec = {
        "tasks": [r.task for r in rows],
        "data_files": [str((pool.split_path(r.task, "train")).resolve()) for r in rows],
        "probabilities": _probabilities(rows),
        "seed": seed,
        "stopping_strategy": "all_exhausted",
    }
    (data_dir / "interleave.json").write_text(dumps_json(spec), encoding="utf-8")
    return ["interleave.json"]


def export(
    format: str,
    data_dir: Path,
    *,
    final_dir: Path,
    parts: dict[str, Path],
    rows: Sequence[TaskSample],
    pool: Pool,
    seed: int,
) -> list[str]:
    """Write ``format``'s files into ``data_dir`` (train.jsonl is already there)."""
    if format in ("jsonl", "messages"):
        return []
    if format == "hf":
        return export_hf(data_dir)
    if format == "llamafactory":
        return export_llamafactory(data_dir, parts, rows)
    if format == "axolotl":
        return export_axolotl(data_dir, final_dir)
    if format == "interleave":
        return export_interleave(data_dir, rows, pool, seed)
    raise InputError(f"unknown format {format!r}")


def load_interleaved(spec_path: str | Path) -> Any:
    """Build the streaming mixture an ``interleave.json`` describes (needs datasets)."""
    import datasets

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    parts = [datasets.load_dataset("json", data_files=f, split="train") for f in spec["data_files"]]
    return datasets.interleave_datasets(parts, probabilities=spec["probabilities"],
                                        seed=spec["seed"],
                                        stopping_strategy=spec["stopping_strategy"])
