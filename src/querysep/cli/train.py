"""``querysep train``: train from a YAML config (resuming automatically), export models.

Usage::

    querysep train CONFIG.yaml [key=value ...] [--restart]
    querysep train export CHECKPOINT -o MODEL_DIR
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from ._common import RESTART_OPTION, TRAIN_OVERRIDES_ARGUMENT, console, handle_errors

_DEFAULT = "run"


class _TrainGroup(TyperGroup):
    """``train CONFIG ...`` runs the default ``run`` command; ``train export ...`` exports."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [_DEFAULT, *args]
        return super().parse_args(ctx, args)


train_app = typer.Typer(
    cls=_TrainGroup,
    help=(
        "Train a separator: querysep train CONFIG.yaml KEY=VALUE... (--restart to start over). "
        "A run continues from OUTPUT_DIR/checkpoints/last.ckpt when it exists. "
        "Export a checkpoint: querysep train export CKPT -o DIR."
    ),
    no_args_is_help=True,
    add_completion=False,
)


@train_app.command(_DEFAULT)
@handle_errors
def run_cmd(
    config: Path = typer.Argument(..., help="Training config (YAML).", show_default=False),
    overrides: list[str] | None = TRAIN_OVERRIDES_ARGUMENT,
    restart: bool = RESTART_OPTION,
) -> None:
    """Train from CONFIG (the default command): print and save the resolved config, resume
    from checkpoints/last.ckpt if present, export the best validated checkpoint (without
    validation: the last) when done.
    """
    from ..training.config import load_config
    from ..training.run import train

    cfg = load_config(config, overrides or [])
    result = train(cfg, restart=restart, echo=_echo, on_checked=lambda: show_config(cfg))
    report_result(
        result,
        "done at step {step}. Try: querysep separate --model {exported} MIX.wav -q 'a dog barking'",
    )


def report_result(result: Any, done: str) -> None:
    """End a training command: exit 130 after a Ctrl-C, else say where the export is
    (``done`` is formatted with ``step`` and ``exported``)."""
    if result.interrupted:
        raise typer.Exit(code=130)
    if result.exported is not None:
        console.print(
            done.format(step=result.step, exported=result.exported),
            soft_wrap=True,
        )


@train_app.command("export")
@handle_errors
def export_cmd(
    checkpoint: Path = typer.Argument(
        ...,
        help="best.ckpt / last.ckpt written by querysep train, or a run folder.",
        show_default=False,
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Model folder to write."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Write into OUTPUT even if it holds other files than an earlier export's.",
    ),
) -> None:
    """Export a training checkpoint as a model folder for querysep separate --model."""
    from ..errors import OutputError
    from ..fileio import check_output_folder, locked_folder, remove_stale_temp_files
    from ..models.separator import CONFIG_NAME, WEIGHTS_NAME
    from ..models.text import BANK_NAME
    from ..training.export import export_checkpoint, find_export_checkpoint

    check_output_folder(output)
    source = checkpoint
    if checkpoint.is_dir():
        folder = checkpoint / "checkpoints" if (checkpoint / "checkpoints").is_dir() else checkpoint
        source = find_export_checkpoint(folder)
    with locked_folder(output, "train export"):  # no other export writes here meanwhile
        written = {CONFIG_NAME, WEIGHTS_NAME, BANK_NAME}  # what an export writes
        for name in written:  # what a killed export left behind
            remove_stale_temp_files(output / name)
        held = {p.name for p in output.iterdir()}
        foreign = held - written  # what an earlier export did not write
        if CONFIG_NAME in held and not _is_model_config(output / CONFIG_NAME):
            foreign.add(CONFIG_NAME)
        if foreign and not overwrite:
            shown = ", ".join(sorted(foreign)[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OutputError(
                f"{output} exists and holds other files than an earlier export's ({shown}); "
                "use --overwrite to write the model into it"
            )
        folder_out = export_checkpoint(source, output)
    console.print(f"exported {source} to {folder_out}")


def _is_model_config(path: Path) -> bool:
    """Whether ``path`` is the ``config.json`` of a model folder (an earlier export's)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == "querysep-separator"


def show_config(config: Any) -> None:
    """Print a run's resolved config (on the global rank 0 process only)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        console.rule("resolved config")
        console.print(config.to_yaml().rstrip())
        console.rule()


def _echo(message: Any) -> None:
    console.print(str(message), soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
