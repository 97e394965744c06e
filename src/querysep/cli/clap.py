"""``querysep clap``: audio-text (CLAP) model tools: ``convert`` (LAION checkpoints), ``train``
(the bundled small model's recipe) and ``zeroshot`` (accuracy and ROC-AUC on an ESC-50 fold)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import console, err_console, handle_errors


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="clap",
        help="Audio-text (CLAP) models used for the ATS score.",
        no_args_is_help=True,
    )

    @group.command("convert")
    @handle_errors
    def convert_cmd(
        checkpoint: Path = typer.Argument(..., help="Original LAION-CLAP checkpoint (.pt)."),
        outdir: Path = typer.Argument(..., help="Model folder to write."),
        tokenizer: Path | None = typer.Option(
            None,
            "--tokenizer",
            "--text-tokenizer",  # the name the other commands give it
            help="Folder of the roberta-base tokenizer (default: the local Hugging Face cache).",
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace OUTDIR if it exists and is not empty."
        ),
    ) -> None:
        """Convert a LAION-CLAP checkpoint (HTSAT + RoBERTa, unfused) to a ClapModel folder."""
        from ..clap.convert import convert_laion_checkpoint

        result = convert_laion_checkpoint(
            checkpoint, outdir, tokenizer=tokenizer, overwrite=overwrite
        )
        console.print(
            f"wrote {result.folder} ({result.audio} + {result.text}; "
            f"source sha256 {result.sha256[:12]}...)",
        )
        if result.tokenizer_note:
            err_console.print(f"note: {result.tokenizer_note}", soft_wrap=True)
        else:
            console.print(f"load it with load_clap({str(result.folder)!r})")

    from .clap_train import add_refit_command, add_train_command, add_zeroshot_command

    add_train_command(group)
    add_refit_command(group)
    add_zeroshot_command(group)
    app.add_typer(group)
