"""taskpgm: principled task mixtures for language-model fine-tuning.

The numeric core (``taskpgm.affinity``, ``taskpgm.mixture``, ``taskpgm.sample``) needs
only numpy and scipy; ``taskpgm.models`` needs the ``models`` extra (torch).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "solve"]


def __getattr__(name: str) -> Any:
    # Lazy so ``import taskpgm`` stays cheap and torch-free.
    if name == "solve":
        from taskpgm.mixture import solve

        return solve
    raise AttributeError(name)
