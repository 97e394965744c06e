"""The ``querysep`` command line: one thin module per subcommand.

Each subcommand module defines ``register(app)``; library errors (:class:`QuerysepError`)
become one line on stderr and exit code 2, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import importlib

import typer

from ._common import state

__all__ = ["app", "main"]

app = typer.Typer(
    name="querysep",
    help="Language-queried audio source separation: get the sound a text query describes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_SUBCOMMANDS = ("separate", "models", "prepare", "mixtures", "train", "evaluate")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    state.debug = debug


for _name in _SUBCOMMANDS:
    try:
        _module = importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a subcommand still being written
        if exc.name != f"{__name__}.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
