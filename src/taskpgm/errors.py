"""User-facing errors.

Anything a user can cause (a missing file, a malformed row, an impossible budget) raises
a subclass of :class:`TaskPGMError`. The CLI turns it into one line on stderr and exit
code 2; anything else is an internal bug and may show a traceback.
"""

from __future__ import annotations


class TaskPGMError(Exception):
    """Base class for errors the user can fix. The message is the whole story."""

    exit_code = 2


class InputError(TaskPGMError):
    """Bad input: a file, a row, a field, a value."""


class ConfigError(TaskPGMError):
    """A configuration file or option is wrong."""


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format a location prefix such as ``data.jsonl:12 field 'prompt'``."""
    out = str(path)
    if line is not None:
        out += f":{line}"
    if field is not None:
        out += f" field {field!r}"
    return out
