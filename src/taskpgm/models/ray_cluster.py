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
