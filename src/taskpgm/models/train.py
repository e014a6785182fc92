"""Supervised fine-tuning with loss on response tokens only (full or LoRA).

Used for experts (one per training task of a pool) and for training a model on a
materialised mixture. A finished model directory is written atomically and carries a
``taskpgm_train.json`` marker, so an interrupted ``experts train`` redoes only the
experts that are missing.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskpgm.choices import EXECUTORS, WEIGHTS_DTYPES
from taskpgm.config import ExpertsConfig as _ExpertsSection
from taskpgm.config import TrainConfig as _TrainSection
from taskpgm.errors import InputError
from taskpgm.io import atomic_dir, atomic_write_json, atomic_write_text, read_json
from taskpgm.models.data import as_examples
from taskpgm.models.encode import Encoded, encode_pairs, model_max_length
from taskpgm.models.heads import response_logits
from taskpgm.models.load import ADAPTER_CONFIG, cpu_threads_for, load_model
from taskpgm.models.prompt_format import DEFAULT_SEPARATOR, check_format, render_all
from taskpgm.portable import portable_path, resolve_recorded
from taskpgm.progress import bars_enabled
from taskpgm.tasks.digest import examples_digest
from taskpgm.tasks.pool import Pool

TRAIN_MARKER = "taskpgm_train.json"
IGNORE = -100

# One source of the defaults: the run config's ``train`` and ``experts`` sections
# (taskpgm.config), which the CLI's ``taskpgm train`` / ``experts train`` also read.
_TRAIN = _TrainSection()
_EXPERTS = _ExpertsSection()


@dataclass
class TrainConfig:
    """The trainer's full settings. ``steps``, ``batch_size``, ``lr`` and ``lora`` default
    to the run config's ``train`` section (:class:`taskpgm.config.TrainConfig`); the rest
    have no config key."""

    steps: int = _TRAIN.steps
    batch_size: int = _TRAIN.batch_size
    lr: float = _TRAIN.lr
    weight_decay: float = 0.0
    warmup_frac: float = 0.1
    schedule: str = "cosine"  # or "linear"
    max_length: int | None = None  # default: the model's context size
    seed: int = 0
    lora: bool = _TRAIN.lora
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] | None = None  # None: peft's default for the architecture
    threads: int | None = None
    prompt_format: str = "auto"  # taskpgm.models.prompt_format
    separator: str = DEFAULT_SEPARATOR
    # Memory: each step's batch_size examples in this many micro-batches (same update).
    accumulate: int = 1
    gradient_checkpointing: bool = False
    weights_dtype: str = "float32"  # or "bfloat16": half the weight memory (LoRA on GPU)

    def check(self) -> None:
        if self.steps < 1:
            raise InputError(f"training: steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise InputError(f"training: batch size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"training: learning rate must be a positive number, got {self.lr}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"training: seed must be a non-negative integer, got {self.seed!r}")
        if self.schedule not in ("cosine", "linear"):
            raise InputError(f"training: schedule must be 'cosine' or 'linear', got {self.schedule!r}")
        check_format(self.prompt_format, self.separator)
        if isinstance(self.accumulate, bool) or not isinstance(self.accumulate, int) or \
                not 1 <= self.accumulate <= self.batch_size:
            raise InputError(f"training: accumulate must be an integer in 1..batch_size "
                             f"({self.batch_size}), got {self.accumulate!r}")
        if self.weights_dtype not in WEIGHTS_DTYPES:
            raise InputError(f"training: weights_dtype must be one of "
                             f"{', '.join(WEIGHTS_DTYPES)}, got {self.weights_dtype!r}")
        if self.lora_r < 1 or self.lora_alpha <= 0:
            raise InputError(f"training: lora_r must be >= 1 and lora_alpha > 0, got "
                             f"{self.lora_r} and {self.lora_alpha}")


@dataclass
class TrainResult:
    out: Path
    steps: int
    n_examples: int
    first_loss: float
    final_loss: float
    seconds: float
    tokens: int


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup_frac * cfg.steps))
    if step < warm:
        return (step + 1) / warm
    frac = (step - warm) / max(1, cfg.steps - warm)
    return 0.5 * (1 + math.cos(math.pi * frac)) if cfg.schedule == "cosine" else 1 - frac


def _batch_order(lengths: list[int], batch_size: int, rng: np.random.Generator):
    """Endless stream of batches: shuffle, group nearby lengths (less padding), shuffle groups."""
    n = len(lengths)
    while True:
        perm = rng.permutation(n)
        mega = batch_size * 8
        batches = []
        for s in range(0, n, mega):
            chunk = sorted(perm[s:s + mega].tolist(), key=lambda i: lengths[i])
            batches.extend(chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size))
        for b in rng.permutation(len(batches)):
            yield batches[b]


def collate(encs: list[Encoded], pad_id: int, labels: bool = True) -> dict[str, torch.Tensor]:
    """Right-pad to the longest row; labels are -100 outside the response."""
    width = max(len(e) for e in encs)
    ids = torch.full((len(encs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encs), width), dtype=torch.long)
    lab = torch.full((len(encs), width), IGNORE, dtype=torch.long)
    for r, e in enumerate(encs):
        ids[r, : len(e)] = torch.tensor(e.ids)
        mask[r, : len(e)] = 1
        lab[r, e.start: len(e)] = ids[r, e.start: len(e)]
    out = {"input_ids": ids, "attention_mask": mask}
    if labels:
        out["labels"] = lab
    return out


def response_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the response tokens (``labels`` != -100), with
    logits built at those positions only (models/heads.py), not [batch, seq, vocab]."""
    labels = batch["labels"]
    rows, pos = torch.nonzero(labels != IGNORE, as_tuple=True)
    total = torch.zeros((), dtype=torch.float32, device=labels.device)
    for sl, logits in response_logits(model, batch["input_ids"], batch["attention_mask"],
                                      rows, pos):
        total = total + torch.nn.functional.cross_entropy(
            logits, labels[rows[sl], pos[sl]], reduction="sum")
    return total / max(len(rows), 1)


def backward_batch(model: Any, rows: list[Encoded], pad_id: int, accumulate: int = 1,
                   amp_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, int]:
    """Accumulate the gradient of the batch's mean response loss in ``accumulate``
    micro-batches; returns (loss, tokens). Each micro-batch's loss is weighted by its
    share of the response tokens, so the summed gradient is the whole batch's whatever
    the split."""
    dev = next(model.parameters()).device
    n_resp = sum(e.n_response for e in rows)
    loss = torch.zeros((), device=dev)
    tokens = 0
    for part in np.array_split(np.arange(len(rows)), accumulate):
        micro = collate([rows[i] for i in part], pad_id)
        micro = {k: v.to(dev) for k, v in micro.items()}
        share = sum(rows[i].n_response for i in part) / n_resp
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            part_loss = response_loss(model, micro) * share
        part_loss.backward()
        loss = loss + part_loss.detach()
        tokens += int(micro["attention_mask"].sum())
    return loss, tokens


def train_model(
    base: str | Path,
    train_examples_or_data_dir: Any,
    out: str | Path,
    *,
    steps: int = _TRAIN.steps,
    batch_size: int = _TRAIN.batch_size,
    lr: float = _TRAIN.lr,
    seed: int = 0,
    lora: bool = _TRAIN.lora,
    prompt_format: str = "auto",
    separator: str = DEFAULT_SEPARATOR,
    config: TrainConfig | None = None,
    progress: bool = True,
    description: str = "train",
    extra_info: dict[str, Any] | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Fine-tune ``base`` on prompt/response pairs and save the result to ``out``.

    ``train_examples_or_data_dir`` is a directory with ``train.jsonl``, a JSONL path, a
    list of pool ``Example`` objects, or ``(prompt, response)`` pairs. With ``config``
    the keyword settings are ignored (``config.lora`` decides LoRA). ``threads``: CPU
    threads for this call instead of ``config.threads``; it is where the work runs, not
    what it learns, so unlike the config it is not recorded in the model.
    """
    cfg = config or TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, lora=lora,
                                prompt_format=prompt_format, separator=separator)
    cfg.check()
    examples = as_examples(train_examples_or_data_dir)
    torch.manual_seed(cfg.seed)
    loaded = load_model(base, dtype=getattr(torch, cfg.weights_dtype), trainable=True)
    model, tok, dev = loaded.model, loaded.tokenizer, loaded.device
    max_len = cfg.max_length or model_max_length(model)
    rendered = render_all(examples, tok, cfg.prompt_format, cfg.separator)
    encs = encode_pairs(tok, rendered, append_eos=True, max_length=max_len)
    if cfg.gradient_checkpointing:
        # Recompute activations in the backward pass: memory for depth, not for time.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora:
        model = _wrap_lora(model, cfg, base)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    batches = _batch_order([len(e) for e in encs], cfg.batch_size, np.random.default_rng(cfg.seed))
    use_amp = dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16

    losses: list[float] = []
    tokens = 0
    t0 = time.perf_counter()
    with cpu_threads_for(model, dev, threads if threads is not None else cfg.threads), \
            _progress(progress, description, cfg.steps) as advance:
        for step in range(cfg.steps):
            loss, n_tok = backward_batch(model, [encs[i] for i in next(batches)],
                                         tok.pad_token_id, cfg.accumulate,
                                         amp_dtype if use_amp else None)
            tokens += n_tok
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss))
            advance(loss=losses[-1])
    seconds = time.perf_counter() - t0
    tail = losses[-max(1, len(losses) // 10):]
    result = TrainResult(Path(out), cfg.steps, len(encs), losses[0], float(np.mean(tail)),
                         seconds, tokens)
    _save(model, tok, Path(out), cfg, result, base, cfg.lora, extra_info)
    return result


def _wrap_lora(model: Any, cfg: TrainConfig, base: str | Path) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = cfg.lora_targets
    if targets is None and getattr(model.config, "model_type", "") == "gpt2":
        targets = ["c_attn", "c_proj", "c_fc"]
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                      target_modules=targets, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise InputError(f"{base}: cannot add LoRA adapters ({exc})") from None


def _save(model: Any, tok: Any, out: Path, cfg: TrainConfig, result: TrainResult,
          base: str | Path, lora: bool, extra: dict[str, Any] | None) -> None:
    with atomic_dir(out, replaces=TRAIN_MARKER) as tmp:
        if lora:
            # Adapters only; the loader (ours and peft's) finds the base through this path,
            # so it stays absolute: the one path an artifact records that is not portable.
            model.peft_config["default"].base_model_name_or_path = str(Path(base).resolve())
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        info = {
            "base": portable_path(base, out), "lora": lora, "config": asdict(cfg),
            "n_examples": result.n_examples, "first_loss": result.first_loss,
            "final_loss": result.final_loss, "tokens": result.tokens,
        }
        if extra:
            info.update(extra)
        # The marker goes in last: a directory with it is a finished model.
        atomic_write_json(tmp / TRAIN_MARKER, info)


def is_finished(model_dir: str | Path) -> bool:
    return (Path(model_dir) / TRAIN_MARKER).is_file()


class _progress:
    """A rich progress bar (or nothing) that reports the running loss."""

    def __init__(self, enabled: bool, description: str, total: int):
        self.enabled, self.description, self.total = enabled, description, total

    def __enter__(self):
        if not self.enabled:
            return lambda **_: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(),
                            transient=True, disable=not bars_enabled())
        self.bar.__enter__()
        task = self.bar.add_task(self.description, total=self.total, loss=float("nan"))
        return lambda **kw: self.bar.update(task, advance=1, **kw)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False


def expert_seed(seed: int, examples_digest: str) -> int:
    """Decorrelate experts' data order while staying reproducible. Keyed by the digest of
    the expert's training examples, not by the task's name or position: adding, removing
    or renaming tasks leaves every other expert's seed (and so its bytes) unchanged,
    which is what lets a changed pool reuse them (taskpgm.pipeline.identity)."""
    return (seed * 1_000_003 + zlib.crc32(examples_digest.encode())) % (2**31)


def relocate_expert(model_dir: str | Path, base: str | Path, task: str,
                    at: str | Path | None = None) -> None:
    """Make an expert copied or moved to ``at`` (default: ``model_dir``, where it is now)
    from another task name, run or a shared cache record what training it there would
    have: its task and its base model's path (relative to ``at``; LoRA adapters name the
    base by its absolute path). A file is rewritten only when it differs, and atomically,
    so a hard link to the old bytes elsewhere keeps them."""
    model_dir = Path(model_dir)
    info = read_train_info(model_dir)
    new_info = {**info, "task": task, "base": portable_path(base, at or model_dir)}
    if new_info != info:
        atomic_write_json(model_dir / TRAIN_MARKER, new_info)
    adapter = model_dir / ADAPTER_CONFIG
    if adapter.is_file():
        text = adapter.read_text(encoding="utf-8")
        old = json.loads(text).get("base_model_name_or_path")
        if isinstance(old, str):
            # A textual swap of the one value keeps peft's layout byte for byte.
            new = text.replace(json.dumps(old), json.dumps(str(Path(base).resolve())), 1)
            if new != text:
                atomic_write_text(adapter, new)


@dataclass
class ExpertJob:
    """One expert to train: the arguments of its :func:`train_model` call."""

    name: str
    examples: list
    out: Path
    config: TrainConfig
    extra_info: dict[str, Any]


def train_experts(
    pool: Pool | str | Path,
    base: str | Path,
    out: str | Path,
    *,
    tasks: list[str] | None = None,
    steps: int = _EXPERTS.steps,
    batch_size: int = _EXPERTS.batch_size,
    lr: float = _EXPERTS.lr,
    seed: int = 0,
    lora: bool = _EXPERTS.lora,
    progress: bool = True,
    prompt_format: str = "auto",
    separator: str = DEFAULT_SEPARATOR,
    config: TrainConfig | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
    executor: str = "local",
    address: str | None = None,
    gpus_per_task: float = 0.0,
) -> dict[str, TrainResult | None]:
    """Train one expert per training task into ``out/<task>/``; finished experts are skipped.

    ``extra``: task -> more fields for that expert's ``taskpgm_train.json`` (the pipeline
    records each expert's identity there). ``executor``: ``local`` trains here, one
    expert after another; ``ray`` runs one Ray task per expert on the cluster at
    ``address`` (:mod:`taskpgm.models.experts_ray`; ``gpus_per_task`` GPUs each), which
    writes the same bytes. Returns task -> result (``None`` for an expert that was
    already there).
    """
    if executor not in EXECUTORS:
        raise InputError(f"experts: unknown executor {executor!r} "
                         f"(choose from {', '.join(EXECUTORS)})")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"training: seed must be a non-negative integer, got {seed!r}")
    pool = pool if isinstance(pool, Pool) else Pool.load(pool)
    names = tasks if tasks is not None else [t.name for t in pool.train_tasks()]
    if not names:
        raise InputError(f"{pool.root}: no tasks with role 'train' to train experts on")
    # Validate everything before the first (slow) expert, so a typo fails fast.
    data: dict[str, list] = {}
    for name in names:
        pool.task(name)
        if not pool.split_path(name, "train").is_file():
            raise InputError(f"{pool.split_path(name, 'train')}: task {name!r} has no train split")
        data[name] = pool.examples(name, "train")
        if not data[name]:
            raise InputError(f"{pool.split_path(name, 'train')}: no examples")
    load_model(base)  # fails here, in one line, if the base does not load
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_cfg = config or TrainConfig(steps=steps, batch_size=batch_size, lr=lr, lora=lora,
                                     prompt_format=prompt_format, separator=separator)
    results: dict[str, TrainResult | None] = {}
    jobs: list[ExpertJob] = []
    for name in names:
        target = out / name
        if is_finished(target):
            results[name] = None
            continue
        if target.exists():  # a leftover without marker: not ours to trust
            shutil.rmtree(target)
        cfg = TrainConfig(**{**asdict(base_cfg), "seed": expert_seed(
            seed, examples_digest(data[name], ids=False))})
        jobs.append(ExpertJob(name, data[name], target, cfg,
                              {"task": name, **(extra or {}).get(name, {})}))
    if executor == "ray" and jobs:
        from taskpgm.models.experts_ray import train_on_ray

        results.update(train_on_ray(base, jobs, address=address, gpus_per_task=gpus_per_task,
                                    progress=progress))
    for i, job in enumerate(jobs if executor == "local" else ()):
        results[job.name] = train_model(
            base, job.examples, job.out, config=job.config, lora=job.config.lora,
            progress=progress, description=f"expert {i + 1}/{len(jobs)} {job.name}",
            extra_info=job.extra_info,
        )
    # Keep experts listed by earlier runs (e.g. trained with another --tasks subset).
    listed = list(names)
    old_path = out / "experts.json"
    if old_path.is_file():
        try:
            old = read_json(old_path)
            earlier = old.get("tasks", []) if isinstance(old, dict) else []
            kept = [t for t in earlier if isinstance(t, str) and (t in names or is_finished(out / t))]
            listed = list(dict.fromkeys(kept + listed))
        except InputError:
            pass  # a damaged listing is simply rewritten
    atomic_write_json(out / "experts.json", {"base": portable_path(base, out), "tasks": listed})
    return {n: results[n] for n in names}  # in the pool's order, however they finished


# Settings that change what an expert learns; a finished expert made with other values
# is kept (resume skips it) but the user is told.
_EXPERT_SETTINGS = ("steps", "batch_size", "lr", "weight_decay", "warmup_frac", "schedule",
                    "max_length", "lora", "lora_r", "lora_alpha", "lora_targets",
                    "prompt_format", "separator", "weights_dtype")


def settings_mismatch(model_dir: str | Path, base: str | Path,
                      config: TrainConfig) -> list[str]:
    """How a finished model's recorded training differs from ``base`` + ``config``.

    Returns lines such as ``"steps 40 (now 200)"``; empty when they match (or when the
    model records nothing to compare).
    """
    try:
        info = read_train_info(model_dir)
    except InputError:
        return []
    diffs = []
    old_base = info.get("base")
    if old_base is not None and old_base != str(base) and \
            resolve_recorded(old_base, model_dir) != Path(base).resolve():
        diffs.append(f"base {old_base} (now {base})")
    old_cfg = info.get("config") or {}
    new_cfg = asdict(config)
    for key in _EXPERT_SETTINGS:
        if key in old_cfg and old_cfg[key] != new_cfg.get(key):
            diffs.append(f"{key} {old_cfg[key]} (now {new_cfg.get(key)})")
    return diffs


def read_train_info(model_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(model_dir) / TRAIN_MARKER)
