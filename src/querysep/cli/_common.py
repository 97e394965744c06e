"""Helpers shared by the subcommands: error reporting and console output."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from ..errors import QuerysepError

__all__ = ["console", "err_console", "fail", "handle_errors", "state"]

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    debug: bool = False


state = _State()


def fail(message: str) -> None:
    """Print ``message`` as one line on stderr and exit with code 2."""
    line = " ".join(str(message).split())
    print(f"querysep: error: {line}", file=sys.stderr)
    raise typer.Exit(code=2)


def handle_errors(func: F) -> F:
    """Turn user errors (and Ctrl-C) raised by ``func`` into a one-line message, exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except QuerysepError as exc:
            if state.debug:
                raise
            fail(str(exc))
        except KeyboardInterrupt:
            if state.debug:
                raise
            fail("interrupted")
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            if state.debug:
                raise
            fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return None

    return wrapper  # type: ignore[return-value]
