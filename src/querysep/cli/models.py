"""``querysep models``: list the models ``--model`` and ``--clap`` can name."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from ._common import console, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("models")
    @handle_errors
    def models_cmd() -> None:
        """List the known separation and audio-text models (the defaults first)."""
        from ..pretrained import _LOADERS, DEFAULT_MODEL, list_models

        table = Table(show_header=True, header_style="bold")
        table.add_column("name")
        table.add_column("description")
        table.add_column("license")
        for info in list_models():
            name = f"{info.name} (default)" if info.name == DEFAULT_MODEL else info.name
            description = info.description
            if info.missing:
                description += f" [needs {', '.join(info.missing)}, which is not installed]"
            table.add_row(Text(name), Text(description), Text(info.license))
        console.print(table)
        kinds = ", ".join(f"{k}:PATH" for k in sorted(_LOADERS))
        console.print(f"Also accepted by --model: a model folder, or {kinds}.")
        _audio_text_models()


def _audio_text_models() -> None:
    from ..clap import DEFAULT_CLAP, list_clap_models
    from ..clap.registry import clap_loader_kinds

    table = Table(
        title="Audio-text models (--clap, for ATS scores)", show_header=True, header_style="bold"
    )
    table.add_column("name")
    table.add_column("description")
    table.add_column("license")
    for info in list_clap_models():
        name = f"{info.name} (default)" if info.name == DEFAULT_CLAP else info.name
        table.add_row(Text(name), Text(info.description), Text(info.license))
    console.print(table)
    kinds = ", ".join(f"{k}:PATH" for k in clap_loader_kinds())
    more = f", or {kinds}" if kinds else ""
    console.print(
        f"Also accepted by --clap: a transformers ClapModel folder, a converted LAION-CLAP "
        f"folder (querysep clap convert){more}."
    )
