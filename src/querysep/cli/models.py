"""``querysep models``: list the models that can be named with ``--model``."""

from __future__ import annotations

import typer
from rich.table import Table

from ._common import console, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("models")
    @handle_errors
    def models_cmd() -> None:
        """List the known models (the default first)."""
        from ..pretrained import _LOADERS, DEFAULT_MODEL, list_models

        table = Table(show_header=True, header_style="bold")
        table.add_column("name")
        table.add_column("description")
        table.add_column("license")
        for info in list_models():
            name = f"{info.name} (default)" if info.name == DEFAULT_MODEL else info.name
            table.add_row(name, info.description, info.license)
        console.print(table)
        kinds = ", ".join(f"{k}:PATH" for k in sorted(_LOADERS))
        console.print(f"Also accepted by --model: a model folder, or {kinds}.")
