"""When to draw progress bars.

Rich's transient bars leave only blank lines when output goes to a file or a pipe (CI
logs, ``make demo > log``), so bars are drawn only on a terminal.
"""

from __future__ import annotations

from rich.console import Console


def bars_enabled(requested: bool = True) -> bool:
    return requested and Console().is_terminal
