"""``querysep clap train`` and ``querysep clap zeroshot`` (added to the ``clap`` group).

Thin wrappers over :func:`querysep.clap.train.train` and
:func:`querysep.clap.zeroshot.evaluate_zeroshot`; wire them in with
:func:`add_train_command` and :func:`add_zeroshot_command`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._common import console, handle_errors

__all__ = ["add_train_command", "add_zeroshot_command"]


def add_train_command(clap_app: typer.Typer) -> None:
    """Add ``train CONFIG -o OUT [key=value ...]`` to the ``clap`` group."""

    @clap_app.command("train")
    @handle_errors
    def train_cmd(
        config: Path = typer.Argument(..., help="YAML config, e.g. configs/esc50-clap.yaml."),
        output: Path = typer.Option(
            ...,
            "--output",
            "-o",
            help="Run folder (resumes if it holds a checkpoint); the model goes to OUTPUT/model.",
        ),
        overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. epochs=20."),
    ) -> None:
        """Train the small CLAP (log-mel CNN + frozen MiniLM) on ESC-50 folds."""
        from ..clap.train import load_train_config, train

        cfg = load_train_config(str(config), list(overrides or []))
        folder = train(cfg, output, log=lambda line: console.print(line, markup=False))
        console.print(f"model written to {folder}", markup=False)


def add_zeroshot_command(clap_app: typer.Typer) -> None:
    """Add ``zeroshot [--clap SPEC] [--fold 4]`` to the ``clap`` group."""

    @clap_app.command("zeroshot")
    @handle_errors
    def zeroshot_cmd(
        clap: str = typer.Option(
            None,
            "--clap",
            help="Audio-text model: name, folder or kind:path (default: the bundled one).",
        ),
        fold: list[int] = typer.Option([4], "--fold", help="ESC-50 fold(s) to score."),
        data: Path = typer.Option(
            Path("/work/shared/datasets/esc50-16k"),
            "--data",
            help="ESC-50 folder with esc50.csv and audio/.",
        ),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps or auto."),
    ) -> None:
        """Zero-shot accuracy (labels, held-out captions) and ATS ROC-AUC on ESC-50 folds."""
        from ..clap.registry import load_clap
        from ..clap.zeroshot import evaluate_zeroshot, load_esc50

        model = load_clap(clap, device)
        result = evaluate_zeroshot(model, load_esc50(data, list(fold)))
        console.print(
            json.dumps({"clap": clap or "default", "folds": fold, **result}, indent=2), markup=False
        )
