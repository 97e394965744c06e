"""Helpers shared by the subcommands: error reporting and console output."""

from __future__ import annotations

import contextlib
import functools
import os
import select
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from ..errors import QuerysepError, error_line

__all__ = [
    "EXIT_STDOUT_CLOSED",
    "console",
    "err_console",
    "error_line",
    "fail",
    "handle_errors",
    "one_line_usage_errors",
    "quiet_when_stdout_closed",
    "show_progress",
    "state",
    "stdout_closed",
]

#: The exit status of a command whose stdout's reader went away before it printed everything
#: (``querysep models | head -1``): it stops there, quietly, with the status of a command
#: killed by SIGPIPE (128 + 13), as ``yes | head -1`` gives. Not 0 (its work may be unfinished,
#: its output was not all read), 1 (a bug's traceback) or 2 (an error of the user's).
EXIT_STDOUT_CLOSED = 141


def stdout_closed() -> NoReturn:
    """Stop quietly with :data:`EXIT_STDOUT_CLOSED`: stdout's reader has gone."""
    # Python flushes stdout once more at exit, which would fail again ("Exception ignored ...
    # BrokenPipeError" on stderr); as the Python docs advise, stdout goes to devnull instead.
    with contextlib.suppress(OSError, ValueError):  # not a file (a test's capture): no flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(EXIT_STDOUT_CLOSED)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on it); True
    where that cannot be asked (no poll, or a stdout with no file descriptor)."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
    except (AttributeError, OSError, ValueError):
        return True
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


@contextlib.contextmanager
def quiet_when_stdout_closed() -> Iterator[None]:
    """Turn a :class:`BrokenPipeError` raised inside because stdout's reader has gone
    (typer's help, ``typer.echo``) into :func:`stdout_closed`, instead of typer's silent exit
    1; one from anywhere else (a socket, a subprocess's pipe) is a bug's and propagates."""
    try:
        yield
    except BrokenPipeError as exc:
        if not _stdout_reader_gone():  # click would end it silently with status 1
            raise RuntimeError(f"broken pipe (not stdout): {exc}") from exc
        stdout_closed()


class _Console(Console):
    """A rich console that stops as :func:`stdout_closed` when its reader goes away (rich's
    own handler exits with status 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        stdout_closed()


# Both consoles print text as it is: no console markup ("[live] take.wav" is a file name, not a
# style), no emoji codes (":dog:" in a query stays text) and no highlighting. The few styled
# words go in as rich Text (Text.assemble).
console = _Console(markup=False, emoji=False, highlight=False)

# Options that several subcommands share (one definition, one help text).
PRECISION_OPTION: Any = typer.Option(
    None,
    "--precision",
    help="Inference precision: 32, bf16-mixed, or auto (bf16 where the device computes "
    "it natively) [default: auto for audiosep:/dcase-baseline: checkpoints, else 32].",
    show_default=False,
)
TEXT_TOKENIZER_OPTION: Any = typer.Option(
    None,
    "--text-tokenizer",
    help="Folder with the roberta-base tokenizer files, for audiosep:/dcase-baseline: "
    "checkpoints [default: the local Hugging Face cache].",
)
CLAP_CHECKPOINT_OPTION: Any = typer.Option(
    None,
    "--clap-checkpoint",
    help="LAION-CLAP .pt for the query encoder of audiosep:/dcase-baseline: checkpoints "
    "(AudioSep's: music_speech_audioset_epoch_15_esc_89.98.pt) [default: the copy inside the "
    "checkpoint].",
)
TRAIN_OVERRIDES_ARGUMENT: Any = typer.Argument(
    None,
    help="Overrides key=value with dotted keys, e.g. optim.lr=3e-4 trainer.max_steps=1000.",
)
RESTART_OPTION: Any = typer.Option(
    False, "--restart", help="Start over: discard the run's checkpoints, logs and model."
)
err_console = _Console(stderr=True, markup=False, emoji=False, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    debug: bool = False


state = _State()


def show_progress(wanted: bool = True) -> bool:
    """Whether to draw a progress bar: ``wanted`` and stderr is a terminal. A bar's ``\\r``
    frames in a log file or a pipe would turn a failed run's one error line into many."""
    return wanted and sys.stderr.isatty()


def fail(message: str) -> None:
    """Print ``message`` as one line on stderr and exit with code 2."""
    line = " ".join(str(message).split())
    print(f"querysep: error: {line}", file=sys.stderr)
    raise typer.Exit(code=2)


# typer raises the exceptions of the click it runs on: its own vendored copy in recent
# releases, the installed click in older ones. Its BadParameter lives in that module.
_click_exceptions = sys.modules[typer.BadParameter.__module__]
_ClickException: type[Exception] = _click_exceptions.ClickException


def usage_message(exc: Exception) -> str:
    """The one-line text of a click usage error, with where to find the command's help."""
    message = str(exc.format_message()).rstrip(". ")  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message = f"{message} (see '{ctx.command_path} {ctx.help_option_names[0]}')"
    return message


@contextlib.contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """Turn click/typer usage errors raised inside into ``querysep: error: ...``, exit 2.

    Bad option values, unknown options or commands, missing arguments and
    :class:`typer.BadParameter` raised by a command all get the same single line as library
    errors, instead of typer's framed multi-line box. A command group called without
    arguments still prints its help.
    """
    try:
        yield
    except _ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help text, shown by typer
            raise
        fail(usage_message(exc))


def handle_errors(func: F) -> F:
    """Turn user errors (and Ctrl-C) raised by ``func`` into a one-line message, exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            if state.debug:
                raise
            fail("interrupted")
        except (QuerysepError, OSError) as exc:
            line = error_line(exc)
            if state.debug or line is None:
                raise
            fail(line)
        return None

    return wrapper  # type: ignore[return-value]


def check_upstream_options(
    models: list[str | None], text_tokenizer: Any, clap_checkpoint: Any
) -> contextlib.AbstractContextManager[Any]:
    """Check ``--text-tokenizer`` and ``--clap-checkpoint`` before any model loads.

    Returns:
        The context in which upstream specs (``audiosep:``, ``dcase-baseline:``) load with
        these options.

    Raises:
        typer.BadParameter: An option given without an upstream model, or a path that is
            not there.
    """
    from ..models.upstream import is_upstream_spec, upstream_options

    given = [
        (opt, value)
        for opt, value in (
            ("--text-tokenizer", text_tokenizer),
            ("--clap-checkpoint", clap_checkpoint),
        )
        if value is not None
    ]
    if given and not any(is_upstream_spec(m) for m in models):
        raise typer.BadParameter(
            "only applies to audiosep:PATH and dcase-baseline:PATH models",
            param_hint=f"'{given[0][0]}'",
        )
    if text_tokenizer is not None:
        from ..models.text.clap import laion_tokenizer_folder

        laion_tokenizer_folder(text_tokenizer)  # names the files it needs when they are not there
    if clap_checkpoint is not None:
        clap_checkpoint = Path(clap_checkpoint).expanduser()  # as every other path option
    if clap_checkpoint is not None and not clap_checkpoint.is_file():
        raise typer.BadParameter(
            f"{clap_checkpoint} is not a file (a LAION-CLAP .pt)", param_hint="'--clap-checkpoint'"
        )
    return upstream_options(text_tokenizer, clap_checkpoint)
