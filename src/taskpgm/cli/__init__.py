"""The ``taskpgm`` command line: a thin typer layer over the library.

Each command group lives in its own module with a ``register(app)`` function, so the
groups stay small and heavy libraries (torch) are imported only inside the commands
that need them.
"""

from __future__ import annotations

import importlib
import sys

import typer

from taskpgm.errors import TaskPGMError

app = typer.Typer(
    name="taskpgm",
    help="Choose task proportions for fine-tuning mixtures (TaskPGM and baselines).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Order here is the order of ``taskpgm --help``: the pipeline's direction of data flow.
_COMMAND_MODULES = (
    "tasks",
    "models",
    "score",
    "affinity",
    "solve",
    "runs",
    "sample",
    "pipeline",
    "cache",
)


@app.callback()
def _root() -> None:
    """Choose task proportions for fine-tuning mixtures (TaskPGM and baselines)."""


@app.command()
def version() -> None:
    """Print the taskpgm version."""
    from taskpgm import __version__

    print(__version__)


for _name in _COMMAND_MODULES:
    importlib.import_module(f"taskpgm.cli.{_name}").register(app)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; user errors become one line and code 2.

    Usage errors are reported by typer itself (exit code 2); a :class:`TaskPGMError`
    raised by a command is printed as ``error: <message>`` with no traceback. So is an
    :class:`OSError` from the environment (disk full, read-only file system, permission
    denied, a file where a directory is needed ...): ``error: <path>: <reason>``.
    """
    try:
        app(args=argv, prog_name="taskpgm", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except TaskPGMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        from taskpgm.io import describe_os_error

        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        # torch and safetensors report a failed write (disk full) as their own error types.
        if not _is_write_failure(exc):
            raise
        print(f"error: writing a model failed: {str(exc).splitlines()[-1].strip()} "
              "(is the disk full?)", file=sys.stderr)
        return 2
    return 0


def _is_write_failure(exc: Exception) -> bool:
    text = str(exc)
    return (isinstance(exc, RuntimeError) or type(exc).__name__ == "SafetensorError") and any(
        s in text for s in ("file write failed", "No space left on device", "Disk quota"))


def main() -> None:
    sys.exit(run())
