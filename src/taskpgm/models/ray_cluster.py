"""Connecting to Ray, shared by the executors that run one Ray task per expert
(:mod:`taskpgm.models.scoring`, :mod:`taskpgm.models.experts_ray`)."""

from __future__ import annotations

from typing import Any

from taskpgm.errors import InputError


def connect(address: str | None, command: str) -> Any:
    """The ``ray`` module, initialised (``address`` None: a local cluster); a missing
    extra or an unreachable cluster is one line naming ``command``."""
    try:
        import ray
    except ImportError:
        raise InputError(f"{command}: executor ray needs the 'ray' extra "
                         "(pip install taskpgm[ray])") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(f"{command}: cannot connect to Ray at {address!r} ({exc})") from None
    return ray


def gather(ray: Any, refs: dict, description: str, progress: bool
           ) -> tuple[dict[str, Any], dict[str, Exception]]:
    """Wait for every Ray task in ``refs`` (object ref -> name) with a progress bar;
    return name -> result and name -> the Ray error of each task that failed. All are
    waited for, so one failure loses none of the others' finished outputs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from taskpgm.progress import bars_enabled

    results: dict[str, Any] = {}
    failed: dict[str, Exception] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=True, disable=not bars_enabled(progress)) as bar:
        t = bar.add_task(description, total=len(refs))
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            name = refs[ready[0]]
            try:
                results[name] = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                failed[name] = exc
            bar.update(t, advance=1)
    return results, failed
