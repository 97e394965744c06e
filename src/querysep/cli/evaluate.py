"""``querysep evaluate``: score models on a mixture list and print a Table-2-style table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from ._common import (
    CLAP_CHECKPOINT_OPTION,
    PRECISION_OPTION,
    TEXT_TOKENIZER_OPTION,
    check_upstream_options,
    console,
    err_console,
    handle_errors,
)


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @handle_errors
    def evaluate_cmd(
        mixtures: Path = typer.Option(
            ...,
            "--mixtures",
            help="Mixture list: DCASE source,noise,snr,caption or mixture,target,caption CSV.",
            show_default=False,
        ),
        audio_dir: Path = typer.Option(
            ..., "--audio-dir", help="Folder with the audio the list names.", show_default=False
        ),
        model: list[str] | None = typer.Option(
            None,
            "--model",
            "-m",
            help="Model name, folder or kind:path, or a system (mixture, oracle-irm[:MODEL], "
            "oracle-ldm:OUTPUT:SOURCE, oracle-mel:OUTPUT:SOURCE). normalized:MODEL is the "
            "model run as 'separate --normalize' runs it, in the row 'MODEL [normalized]'; "
            "unsnapped:MODEL as 'separate --no-snap' runs it, in the row 'MODEL [unsnapped]'. "
            "Repeatable; one table row each (default: the default model).",
        ),
        no_baselines: bool = typer.Option(
            False, "--no-baselines", help="Leave out the mixture and oracle-irm rows."
        ),
        output: Path | None = typer.Option(
            None,
            "--output",
            "-o",
            help="Output folder; re-running into it resumes (default: evaluation/LIST-NAME).",
        ),
        limit: int | None = typer.Option(None, "--limit", help="Only the first N rows."),
        device: str = typer.Option("cpu", help="cpu, cuda, mps or auto."),
        precision: str | None = PRECISION_OPTION,
        text_tokenizer: Path | None = TEXT_TOKENIZER_OPTION,
        clap_checkpoint: Path | None = CLAP_CHECKPOINT_OPTION,
        sample_rate: int = typer.Option(16000, "--sample-rate", help="Evaluation rate in Hz."),
        skip_missing: bool = typer.Option(
            False, "--skip-missing", help="Skip clips whose audio is missing (counted)."
        ),
        segment_seconds: float = typer.Option(
            10.0,
            help="Length of the segments models see; consecutive segments overlap by "
            "min(1 s, half a segment), crossfaded.",
        ),
        clap: str | None = typer.Option(
            None,
            "--clap",
            help="Audio-text model for the ATS column: a name (see 'querysep models'), a "
            "transformers ClapModel or converted folder, or kind:path [default: esc50-clap].",
        ),
        no_ats: bool = typer.Option(
            False, "--no-ats", help="Leave out the ATS column (and the reference row)."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    ) -> None:
        """Score systems on a mixture list: per-clip CSV, summary.json and a markdown table."""
        from ..api import check_segment
        from ..data.manifest import read_mixture_list
        from ..errors import DataError, QueryError
        from ..evaluation import ATSHook, ModelSystem, SystemOptions, evaluate, resolve_systems
        from ..evaluation.runner import check_settings
        from ..fileio import check_output_folder
        from ..models.text import validate_queries
        from ..precision import check_precision
        from ..pretrained import DEFAULT_MODEL, resolve_device

        check_settings(sample_rate=sample_rate, limit=limit)
        check_segment(segment_seconds, 0.0)
        resolve_device(device)  # checked even when no row loads a model (baselines only)
        if precision is not None:
            check_precision(precision)
        specs = list(model) if model else [DEFAULT_MODEL]
        inner = [_unwrapped(s) for s in specs]
        upstream = check_upstream_options(inner, text_tokenizer, clap_checkpoint)
        # Check the inputs before loading any model (which can take a while).
        for row in read_mixture_list(mixtures)[:limit]:
            try:
                validate_queries(row.caption)
            except QueryError as exc:
                raise DataError(f"{mixtures}: the caption of {row.id}: {exc}") from None
        if not audio_dir.is_dir():
            raise DataError(
                f"audio folder not found: {audio_dir}"
                + (" (it is a file)" if audio_dir.exists() else "")
            )
        out_dir = check_output_folder(output or Path("evaluation") / mixtures.stem)
        options = SystemOptions(device=device, segment_seconds=segment_seconds, precision=precision)
        hooks = [] if no_ats else [ATSHook(clap, device=device)]
        # The upgrade of an older folder may rebuild systems by name: with these options too.
        with upstream:
            systems = resolve_systems(
                specs, baselines=not no_baselines, reference=not no_ats, options=options
            )
            summary = evaluate(
                mixtures,
                audio_dir,
                systems,
                out_dir,
                sample_rate=sample_rate,
                progress=progress,
                limit=limit,
                skip_missing=skip_missing,
                baselines=False,
                metric_hooks=hooks,
                options=options,
            )
        console.print(summary.table(), soft_wrap=True)
        line = f"{summary.num_clips} clips"
        if summary.num_upgraded:
            line += f", {summary.num_upgraded} earlier rows given their ATS"
        if summary.num_resumed:
            line += f", {summary.num_resumed} scores resumed from an earlier run"
        if summary.skipped:
            line += f", {len(summary.skipped)} skipped for missing audio"
        console.print(line)
        for path in (summary.per_clip_path, summary.summary_path, summary.table_path):
            console.print(f"wrote {path}")
        # After the run, so that an error is the only line on stderr.
        for system in systems:
            if isinstance(system, ModelSystem) and system.is_test_model:
                err_console.print(
                    Text.assemble(
                        ("note:", "yellow"),
                        f" {system.name} has random weights: its scores only show that the "
                        "pipeline works.",
                    ),
                    soft_wrap=True,
                )


def _unwrapped(spec: str) -> str:
    """The model inside a row spec (``normalized:model:audiosep:X`` -> ``audiosep:X``)."""
    spec = spec.strip()
    while spec.startswith(("model:", "oracle-irm:", "normalized:", "unsnapped:")):
        spec = spec.partition(":")[2].strip()
    return spec
