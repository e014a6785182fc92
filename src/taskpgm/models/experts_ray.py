"""Expert training on a Ray cluster: one Ray task per expert (``experts.executor: ray``).

Each task makes the very :func:`taskpgm.models.train.train_model` call local training
makes (the same TrainConfig, per-expert seed and recorded fields, on one CPU thread as a
small model trains locally), so an expert is the same bytes wherever it trained. The base
model and the experts directory must be on a filesystem every worker sees. Each expert is
written atomically by its own task, so a lost worker costs only its expert: the others
finish, the call then fails in one line naming the lost ones, and a re-run trains only
those (finished experts are skipped).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from taskpgm.errors import TaskPGMError
from taskpgm.models.ray_cluster import connect, gather
from taskpgm.portable import current_run_root


def train_on_ray(base: str | Path, jobs: list, *, address: str | None = None,
                 gpus_per_task: float = 0.0, progress: bool = True) -> dict[str, Any]:
    """Train every :class:`~taskpgm.models.train.ExpertJob` as its own Ray task; returns
    name -> TrainResult once all have ended, or raises naming every expert that failed."""
    ray = connect(address, "experts")
    remote = ray.remote(num_cpus=1, num_gpus=gpus_per_task)(_train_one)
    root = current_run_root()
    refs = {remote.remote(str(Path(base).resolve()), job.examples, str(job.out.resolve()),
                          asdict(job.config), job.extra_info,
                          str(root) if root is not None else None): job.name
            for job in jobs}
    results, failed = gather(ray, refs, "experts (ray)", progress)
    if failed:
        listed = "; ".join(f"{n} ({_reason(ray, exc)})" for n, exc in sorted(failed.items()))
        raise TaskPGMError(f"experts: {len(failed)} of {len(jobs)} Ray task(s) failed: "
                           f"{listed}; the other experts are finished, and a re-run trains "
                           "only the failed ones")
    return results


def _reason(ray: Any, exc: Exception) -> str:
    cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) \
        else None
    if cause is None:
        return f"worker lost: {type(exc).__name__}"  # WorkerCrashedError, NodeDiedError, ...
    lines = str(cause).strip().splitlines()
    first = lines[0] if lines else ""
    return first if isinstance(cause, TaskPGMError) else f"{type(cause).__name__}: {first}"


def _train_one(base: str, examples: list, out: str, config: dict[str, Any],
               extra_info: dict[str, Any], run_root: str | None) -> Any:
    import contextlib

    # Looked up at call time, so a test's worker hook can stand in for it.
    from taskpgm.models import train
    from taskpgm.portable import run_root as within

    # Inside a pipeline run, paths outside the run are recorded absolute: the same rule
    # in this process as in the driver's, hence the same taskpgm_train.json.
    with within(run_root) if run_root is not None else contextlib.nullcontext():
        # One CPU per Ray task: more intra-op threads would only fight the other tasks.
        return train.train_model(base, examples, out, config=train.TrainConfig(**config),
                                 progress=False, extra_info=extra_info, threads=1)
