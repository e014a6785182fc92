"""The scoring engine: every expert scores every task's probe examples.

For each (expert, task) and each probe example we store the sum over response tokens
of ``log p(token | prefix)`` (a causal LM's logits at position ``t`` predict token
``t + 1``, so response token ``p`` is read from the logits at ``p - 1``) and the
number of response tokens; optionally the top-k next-token log-probabilities at each
response position, for Jensen-Shannon affinity.

Speed: examples are sorted by length and cut into batches of about ``max_batch_tokens``
padded tokens (little padding) and at most ``batch_size`` examples (the run config's
``scoring.batch_size``; default: the token budget and 256 rows), ``log_softmax`` runs only
on response positions, one
loaded expert scores all tasks, and on a GPU the forward pass runs under bf16/fp16
autocast while log-softmax and sums stay in fp32/fp64.

Resumability: one Parquet shard per (expert, task), written atomically; a restarted
run skips shards that exist (and does not even load an expert whose shards are all
there).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskpgm.choices import EXECUTORS
from taskpgm.errors import InputError
from taskpgm.io import read_json, sha256_file
from taskpgm.models.encode import Encoded, encode_pairs, length_batches, model_max_length
from taskpgm.models.heads import response_logits
from taskpgm.models.load import ADAPTER_CONFIG, LoadedModel, cpu_threads_for, load_model
from taskpgm.models.prompt_format import DEFAULT_SEPARATOR, check_format, render_all
from taskpgm.models.train import collate
from taskpgm.portable import portable_path
from taskpgm.progress import bars_enabled
from taskpgm.scores import (
    SCORES_MANIFEST,
    ScoresManifest,
    ScoreTable,
    Shard,
    shard_path,
    write_manifest,
    write_shard,
)
from taskpgm.tasks.pool import Pool

BASE_EXPERT = "base"


@dataclass
class ScoreSettings:
    """Everything that changes the numbers in a shard (recorded in ``scores.json``)."""

    topk: int = 0
    append_eos: bool = True
    max_length: int | None = None  # default: the model's context size
    prompt_format: str = "auto"  # taskpgm.models.prompt_format: the same text experts trained on
    separator: str = DEFAULT_SEPARATOR

    def check(self) -> None:
        if self.topk < 0:
            raise InputError(f"score: topk must be >= 0, got {self.topk}")
        check_format(self.prompt_format, self.separator)


@dataclass
class ScoredBatch:
    logprob: np.ndarray  # float64 [m]
    n_tokens: np.ndarray  # int32 [m]
    topk_ids: list[np.ndarray] | None = None
    topk_logprobs: list[np.ndarray] | None = None


def autocast_dtype(model: Any, device: torch.device) -> torch.dtype | None:
    """Half-precision autocast on GPUs; ``None`` (plain fp32) on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def score_encoded(
    model: Any,
    encs: Sequence[Encoded],
    *,
    pad_id: int,
    topk: int = 0,
    max_batch_tokens: int = 8192,
    batch_size: int | None = None,
    device: torch.device | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ScoredBatch:
    """Score encoded examples; results come back in the input order.

    Each forward pass holds at most ``max_batch_tokens`` padded tokens and at most
    ``batch_size`` examples (``None``: the engine's own cap of 256). Batching changes
    the numbers by float noise only: every row is scored under its own attention mask.
    """
    device = device or next(model.parameters()).device
    amp = autocast_dtype(model, device)
    m = len(encs)
    logprob = np.zeros(m, dtype=np.float64)
    n_tokens = np.array([e.n_response for e in encs], dtype=np.int32)
    tk_ids: list[np.ndarray | None] = [None] * m
    tk_lp: list[np.ndarray | None] = [None] * m
    rows_cap = {} if batch_size is None else {"max_batch": batch_size}
    batches = length_batches([len(e) for e in encs], max_batch_tokens, **rows_cap)
    with torch.inference_mode():
        for idx in batches:
            rows_enc = [encs[i] for i in idx]
            batch = collate(rows_enc, pad_id, labels=False)
            ids = batch["input_ids"].to(device)
            # Gather (row, position-that-predicts-it) for every response token.
            rows = torch.cat([torch.full((e.n_response,), r, dtype=torch.long)
                              for r, e in enumerate(rows_enc)]).to(device)
            pos = torch.cat([torch.arange(e.start, len(e), dtype=torch.long)
                             for e in rows_enc]).to(device)
            targets = ids[rows, pos]
            tok_lp = torch.empty(len(rows), dtype=torch.float32, device=device)
            top_v, top_i = [], []
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                # Logits only where a response token is predicted (models/heads.py).
                for sl, logits in response_logits(model, ids, batch["attention_mask"].to(device),
                                                  rows, pos):
                    lp = torch.log_softmax(logits, dim=-1)
                    tok_lp[sl] = lp.gather(1, targets[sl, None]).squeeze(1)
                    if topk:
                        v, t = lp.topk(min(topk, lp.shape[-1]), dim=-1)
                        top_v.append(v.cpu())
                        top_i.append(t.cpu())
                    del lp, logits
            sums = torch.zeros(len(idx), dtype=torch.float64, device=device)
            sums.index_add_(0, rows, tok_lp.double())
            logprob[idx] = sums.cpu().numpy()
            if topk:
                counts = [e.n_response for e in rows_enc]
                vals, tops = torch.cat(top_v), torch.cat(top_i)
                for i, v, t in zip(idx, vals.split(counts), tops.split(counts), strict=True):
                    tk_ids[i] = t.numpy().astype(np.int32)
                    tk_lp[i] = v.numpy().astype(np.float32)
            if on_batch:
                on_batch(len(idx))
    if topk:
        return ScoredBatch(logprob, n_tokens, tk_ids, tk_lp)  # type: ignore[arg-type]
    return ScoredBatch(logprob, n_tokens)


def score_pairs(
    loaded: LoadedModel,
    pairs: Sequence[Any],
    settings: ScoreSettings | None = None,
    *,
    max_batch_tokens: int = 8192,
    batch_size: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ScoredBatch:
    """Render pool examples or (prompt, response) pairs under ``settings.prompt_format``,
    encode them with the model's tokenizer and score them."""
    s = settings or ScoreSettings()
    max_len = s.max_length or model_max_length(loaded.model)
    rendered = render_all(pairs, loaded.tokenizer, s.prompt_format, s.separator)
    encs = encode_pairs(loaded.tokenizer, rendered, append_eos=s.append_eos, max_length=max_len)
    return score_encoded(loaded.model, encs, pad_id=loaded.tokenizer.pad_token_id, topk=s.topk,
                         max_batch_tokens=max_batch_tokens, batch_size=batch_size,
                         device=loaded.device, on_batch=on_batch)


# -- one expert, many tasks -------------------------------------------------------------

def score_expert(
    expert_name: str,
    expert_dir: str | Path,
    pool_root: str | Path,
    tasks: Sequence[str],
    out: str | Path,
    settings: ScoreSettings,
    *,
    max_batch_tokens: int = 8192,
    device: str | None = None,
    threads: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    batch_size: int | None = None,
) -> list[str]:
    """Write the missing shards of one expert; returns the tasks it scored this time."""
    todo = [t for t in tasks if not shard_path(out, expert_name, t).is_file()]
    if not todo:
        return []
    pool = Pool.load(pool_root)
    loaded = load_model(expert_dir, device=device)
    done = []
    with cpu_threads_for(loaded.model, loaded.device, threads):
        done = _score_tasks(expert_name, loaded, pool, todo, out, settings, max_batch_tokens,
                            on_batch, batch_size)
    return done


def _score_tasks(expert_name, loaded, pool, todo, out, settings, max_batch_tokens, on_batch,
                 batch_size=None):
    done = []
    for task in todo:
        examples = pool.examples(task, "probe")
        scored = score_pairs(loaded, examples, settings,
                             max_batch_tokens=max_batch_tokens, batch_size=batch_size,
                             on_batch=on_batch)
        write_shard(shard_path(out, expert_name, task), Shard(
            [e.id for e in examples], scored.logprob, scored.n_tokens,
            scored.topk_ids, scored.topk_logprobs,
        ))
        done.append(task)
    return done


# -- the whole pool -----------------------------------------------------------------------

def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file()


def resolve_experts(
    pool: Pool, experts_dir: str | Path, experts: Sequence[str] | None, base: str | Path | None
) -> dict[str, Path]:
    """Expert name -> directory; every named expert must exist (one line if not)."""
    experts_dir = Path(experts_dir)
    if not experts_dir.is_dir():
        raise InputError(f"{experts_dir}: experts directory not found")
    names = list(experts) if experts is not None else [t.name for t in pool.train_tasks()]
    if not names:
        raise InputError(f"{pool.root}: no tasks with role 'train', so no experts to score with")
    out: dict[str, Path] = {}
    for name in names:
        d = experts_dir / name
        if not _is_model_dir(d):
            raise InputError(f"{d}: expert for task {name!r} not found "
                             "(train it with `taskpgm experts train`)")
        out[name] = d
    if base is not None:
        if BASE_EXPERT in out:
            raise InputError(f"a task is named {BASE_EXPERT!r}, which clashes with --base")
        if not Path(base).is_dir():
            raise InputError(f"{base}: base model directory not found")
        out[BASE_EXPERT] = Path(base)
    return out


def check_probe_splits(pool: Pool, tasks: Sequence[str]) -> dict[str, str]:
    """Every task needs a non-empty probe split; returns task -> sha256 of its probe file."""
    digests = {}
    for t in tasks:
        pool.task(t)
        path = pool.split_path(t, "probe")
        if not path.is_file():
            raise InputError(f"{path}: task {t!r} has no probe split")
        if not any(True for _ in pool.iter_examples(t, "probe")):
            raise InputError(f"{path}: probe split of task {t!r} is empty")
        digests[t] = sha256_file(path)
    return digests


def _fingerprint(settings: ScoreSettings, digests: dict[str, str]) -> str:
    h = hashlib.sha256(repr(sorted(asdict(settings).items())).encode())
    for t in sorted(digests):
        h.update(f"{t}={digests[t]}".encode())
    return h.hexdigest()[:16]


def score_pool(
    pool: Pool | str | Path,
    experts_dir: str | Path,
    out: str | Path,
    *,
    executor: str = "local",
    topk: int = 0,
    include_base: str | Path | None = None,
    experts: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    address: str | None = None,
    max_batch_tokens: int = 8192,
    batch_size: int | None = None,
    device: str | None = None,
    gpus_per_task: float = 0.0,
    settings: ScoreSettings | None = None,
    progress: bool = True,
    unscored: Collection[tuple[str, str]] = (),
) -> ScoreTable:
    """Score every task's probe split with every expert (and the base model, if given).

    Shards that already exist under ``out`` are kept; only missing ones are computed.
    ``batch_size``: at most this many probe examples per forward pass (``None``: the
    token budget ``max_batch_tokens`` and the engine's cap of 256). Like
    ``max_batch_tokens`` it changes scores by float noise only, so it is not part of the
    scores' fingerprint: a resumed run may use another value.
    """
    if executor not in EXECUTORS:
        raise InputError(f"score: unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
    if isinstance(max_batch_tokens, bool) or not isinstance(max_batch_tokens, int) \
            or max_batch_tokens < 1:
        raise InputError(f"score: max batch tokens must be a positive integer, "
                         f"got {max_batch_tokens!r}")
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"score: batch_size must be a positive integer, got {batch_size!r}")
    if device is not None and executor == "local":  # Ray workers may have GPUs we lack
        from taskpgm.models.load import pick_device

        pick_device(device)  # a bad --device fails here, before anything is written
    pool = pool if isinstance(pool, Pool) else Pool.load(pool)
    settings = settings or ScoreSettings(topk=topk)
    settings.check()
    task_names = list(tasks) if tasks is not None else pool.names
    digests = check_probe_splits(pool, task_names)
    expert_dirs = resolve_experts(pool, experts_dir, experts, include_base)
    out = Path(out)
    fp = _fingerprint(settings, digests)
    _check_existing(out, fp)
    manifest = ScoresManifest(
        experts=list(expert_dirs), tasks=task_names, topk=settings.topk,
        metadata={"fingerprint": fp, "settings": asdict(settings),
                  "probe_sha256": digests, "pool": portable_path(pool.root, out)},
    )
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest)

    # ``unscored``: (expert, task) pairs left out on purpose (partial scoring; the
    # affinity stage completes them).
    skip = set(unscored)
    tasks_of = {e: [t for t in task_names if (e, t) not in skip] for e in expert_dirs}
    todo = {e: d for e, d in expert_dirs.items()
            if any(not shard_path(out, e, t).is_file() for t in tasks_of[e])}
    n_examples = sum(pool.task(t).count("probe") or len(pool.examples(t, "probe"))
                     for t in task_names)
    n_missing = sum(1 for e in todo for t in tasks_of[e] if not shard_path(out, e, t).is_file())
    t0 = time.perf_counter()
    if todo:
        if executor == "local":
            _run_local(todo, pool, tasks_of, out, settings, max_batch_tokens, device,
                       progress, n_examples, batch_size)
        else:
            _run_ray(todo, pool, tasks_of, out, settings, max_batch_tokens, device, address,
                     gpus_per_task, progress, batch_size)
    table = ScoreTable.load(out)
    table.manifest.metadata["run"] = {"shards_computed": n_missing,
                                      "seconds": time.perf_counter() - t0}  # not written
    return table


def _check_existing(out: Path, fp: str) -> None:
    mpath = out / SCORES_MANIFEST
    if not mpath.is_file():
        return
    old = read_json(mpath)
    old_fp = (old.get("metadata") or {}).get("fingerprint") if isinstance(old, dict) else None
    if old_fp != fp:
        raise InputError(f"{mpath}: existing scores were made with other settings or probe data; "
                         "use a new output directory or delete it")


def _run_local(todo, pool, tasks, out, settings, max_batch_tokens, device, progress, n_ex,
               batch_size=None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=True, disable=not bars_enabled(progress)) as bar:
        overall = bar.add_task("experts", total=len(todo))
        for name, d in todo.items():
            t = bar.add_task(f"scoring with {name}", total=n_ex)
            score_expert(name, d, pool.root, tasks[name], out, settings,
                         max_batch_tokens=max_batch_tokens, device=device,
                         on_batch=lambda n, t=t: bar.update(t, advance=n),
                         batch_size=batch_size)
            bar.remove_task(t)
            bar.update(overall, advance=1)


def _run_ray(todo, pool, tasks, out, settings, max_batch_tokens, device, address,
             gpus_per_task, progress, batch_size=None):
    from taskpgm.models.ray_cluster import connect, gather

    ray = connect(address, "score")
    remote = ray.remote(num_cpus=1, num_gpus=gpus_per_task)(_ray_score_expert)
    refs = {remote.remote(name, str(Path(d).resolve()), str(Path(pool.root).resolve()),
                          list(tasks[name]), str(Path(out).resolve()), asdict(settings),
                          max_batch_tokens, device, batch_size): name
            for name, d in todo.items()}
    _, failed = gather(ray, refs, "experts (ray)", progress)
    for exc in (failed[n] for n in sorted(failed)):  # the finished shards are kept
        if isinstance(exc, ray.exceptions.RayTaskError):
            cause = exc.as_instanceof_cause()
            if isinstance(cause, InputError):
                raise InputError(str(cause).splitlines()[0]) from None
        raise exc


def _ray_score_expert(name, expert_dir, pool_root, tasks, out, settings, max_batch_tokens,
                      device, batch_size=None):
    # One CPU per Ray task: more intra-op threads would just fight the other tasks.
    return score_expert(name, expert_dir, pool_root, tasks, out, ScoreSettings(**settings),
                        max_batch_tokens=max_batch_tokens, device=device, threads=1,
                        batch_size=batch_size)
