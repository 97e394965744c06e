"""``querysep app``: the web app (needs the ``app`` extra, gradio)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer
from rich.text import Text

from ._common import (
    CLAP_CHECKPOINT_OPTION,
    TEXT_TOKENIZER_OPTION,
    check_upstream_options,
    err_console,
    fail,
    handle_errors,
)


def register(app: typer.Typer) -> None:
    @app.command("app")
    @handle_errors
    def app_cmd(
        host: str = typer.Option(
            "127.0.0.1",
            help="Address to listen on (IPv6 too: ::1); 0.0.0.0 opens it to the network "
            "(:: to the IPv6 network only).",
        ),
        port: int = typer.Option(7860, min=1, max=65535, help="Port to listen on."),
        model: list[str] = typer.Option(
            [],
            "--model",
            "-m",
            help="A model to offer besides the named ones (name, folder or kind:path); "
            "repeatable, the first is the default.",
        ),
        share: bool = typer.Option(
            False, "--share", help="Also ask gradio for a public share link (off by default)."
        ),
        clap: str | None = typer.Option(
            None, "--clap", help="Audio-text model for the ATS scores [default: esc50-clap]."
        ),
        text_tokenizer: Path | None = TEXT_TOKENIZER_OPTION,
        clap_checkpoint: Path | None = CLAP_CHECKPOINT_OPTION,
        # The ranges are AppConfig's (querysep.app.service.LIMITS), which also refuses NaN.
        max_upload_mb: float = typer.Option(
            200.0, min=0.001, max=100_000.0, help="Largest upload, in MB."
        ),
        max_minutes: float = typer.Option(
            30.0, min=0.001, max=1440.0, help="Longest recording, in minutes."
        ),
        max_segment_seconds: float = typer.Option(
            60.0,
            min=0.1,
            max=3600.0,
            help="Longest segment a request may ask for (memory grows with it).",
        ),
        concurrency: int = typer.Option(
            1, min=1, max=64, help="Requests separated at once; the others wait in a queue."
        ),
        stop_grace_seconds: float = typer.Option(
            5.0,
            min=0.0,
            max=3600.0,
            help="On Ctrl-C or SIGTERM, how long to wait for requests in progress; those "
            "still running then are abandoned.",
        ),
        keep_minutes: float = typer.Option(
            60.0, min=1.0, max=10080.0, help="How long uploads and results stay on disk."
        ),
        max_disk_gb: float = typer.Option(
            4.0, min=0.01, max=10_000.0, help="Most disk the app's private folder may use."
        ),
    ) -> None:
        """Serve a web page: upload or record audio, type what to hear, listen, download."""
        # Not imported here: parts of gradio read where to keep files when first imported,
        # and serve() points them into its private folder first.
        if importlib.util.find_spec("gradio") is None:
            fail("querysep app needs gradio: install the app extra, pip install 'querysep[app]'")
        from ..app import AppConfig, serve
        from ..app.server import check_host, is_loopback

        check_upstream_options(model, text_tokenizer, clap_checkpoint)
        host = check_host(host, port)
        config = AppConfig(
            models=tuple(model),
            clap=clap,
            text_tokenizer=text_tokenizer,
            clap_checkpoint=clap_checkpoint,
            max_upload_mb=max_upload_mb,
            max_minutes=max_minutes,
            max_segment_seconds=max_segment_seconds,
            concurrency=concurrency,
            stop_grace_seconds=stop_grace_seconds,
            keep_minutes=keep_minutes,
            max_disk_gb=max_disk_gb,
        )
        if not is_loopback(host):
            err_console.print(
                Text.assemble(
                    ("warning:", "yellow"),
                    f" listening on {host}: anyone who can reach this machine can use the app; "
                    "it has no accounts, so put a proxy with authentication in front of it "
                    "before it faces the internet.",
                ),
                soft_wrap=True,
            )
        serve(config, host=host, port=port, share=share, announce=_say)


def _say(line: str) -> None:
    print(line, flush=True)
