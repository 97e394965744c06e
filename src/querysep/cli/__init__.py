"""The ``querysep`` command line: one thin module per subcommand.

Each subcommand module defines ``register(app)``; library errors (:class:`QuerysepError`)
become one line on stderr and exit code 2, with the traceback only under ``--debug``. A
command whose stdout's reader goes away (``querysep models | head -1``) stops quietly with
exit code 141 (:data:`~querysep.cli._common.EXIT_STDOUT_CLOSED`).
"""

from __future__ import annotations

import importlib
import io
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from ._common import one_line_usage_errors, quiet_when_stdout_closed, state

__all__ = ["app", "main"]


class _RootGroup(TyperGroup):
    """The ``querysep`` group: usage errors of any subcommand become one line, exit 2; a
    closed stdout ends any of them quietly, exit 141.

    Parsing the root options happens in :meth:`make_context`; resolving, parsing and running
    a subcommand (and its subcommands) all happen inside the root's :meth:`invoke`.

    An empty path (``-o ""``) is a usage error for every command: ``Path("")`` is the
    current folder, so it would otherwise read or write there.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _refuse_empty_paths(self)

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with quiet_when_stdout_closed(), one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with quiet_when_stdout_closed(), one_line_usage_errors():
            return super().invoke(ctx)


def _refuse_empty_paths(command: Any) -> None:
    """Make each parameter of ``command`` and its subcommands that gives a path (or paths)
    refuse an empty string as one."""
    for param in getattr(command, "params", ()):
        process = param.process_value

        def checked(ctx: Any, value: Any, _param=param, _process=process) -> Any:
            result = _process(ctx, value)
            raw = value if isinstance(value, (list, tuple)) else [value]
            out = result if isinstance(result, (list, tuple)) else [result]
            if any(r == "" and isinstance(o, Path) for r, o in zip(raw, out, strict=False)):
                raise typer.BadParameter("is empty: give a file or a folder", ctx, _param)
            return result

        param.process_value = checked
    for sub in getattr(command, "commands", {}).values():
        _refuse_empty_paths(sub)


app = typer.Typer(
    name="querysep",
    cls=_RootGroup,
    help="Language-queried audio source separation: get the sound a text query describes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[default: X]" is text, not a markup tag
)

_SUBCOMMANDS = (
    "separate",
    "ats",
    "clap",
    "models",
    "prepare",
    "augment",
    "mixtures",
    "train",
    "ldm",
    "evaluate",
    "webapp",  # querysep app (a module named app would hide the typer app above)
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    state.debug = debug
    # Results name files and queries in any script: on a stdout that cannot encode them (a
    # pipe on a Latin-1 or ASCII locale) they are escaped, as stderr escapes them, instead of
    # ending a finished command with a UnicodeEncodeError.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")


for _name in _SUBCOMMANDS:
    try:
        _module = importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a subcommand still being written
        if exc.name != f"{__name__}.{_name}":
            raise
        continue
    _module.register(app)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM stops a command as Ctrl-C does (partial outputs removed, one line, a
    training run saved at its step); a second SIGTERM kills at once."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    app()
