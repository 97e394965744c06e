"""``querysep ats``: how well audio matches text (CLAP similarity), with no reference needed."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from ._common import console, err_console, handle_errors, show_progress


def _progress(total: int, enabled: bool):
    if total < 2 or not show_progress(enabled):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc="embedding audio", leave=False)


def register(app: typer.Typer) -> None:
    @app.command("ats")
    @handle_errors
    def ats_cmd(
        files: list[Path] | None = typer.Argument(
            None, help="Audio file(s) to score against each query.", show_default=False
        ),
        query: list[str] | None = typer.Option(
            None, "--query", "-q", help="Text to score the files against. Repeatable."
        ),
        pair_list: Path | None = typer.Option(
            None,
            "--list",
            help="CSV with columns audio,caption (paths relative to the CSV's folder): "
            "scores each row.",
        ),
        output: Path | None = typer.Option(
            None,
            "--output",
            "-o",
            help="CSV to write: with --list, the list plus an ats column; with files, "
            "one row per (file, query).",
        ),
        clap: str | None = typer.Option(
            None,
            "--clap",
            help="Audio-text model: a name (see 'querysep models'), a transformers ClapModel "
            "or converted folder, or kind:path [default: esc50-clap].",
        ),
        skip_bad: bool = typer.Option(
            False,
            "--skip-bad",
            help="With --list: score the good rows and leave ats empty for bad ones "
            "(missing, unreadable, silent or NaN file, empty caption) instead of failing; "
            "silence and NaN samples are found only when a file is read, after the rows "
            "checked up front.",
        ),
        device: str = typer.Option("cpu", help="cpu, cuda, mps or auto."),
        batch_size: int = typer.Option(16, "--batch-size", help="Audio windows per batch."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    ) -> None:
        """Score audio against text: the cosine of their CLAP embeddings (ATS)."""
        from ..audio.io import audio_info
        from ..clap import load_clap
        from ..fileio import check_output_file, refuse_overwriting
        from ..models.text import validate_queries

        if batch_size < 1:
            raise typer.BadParameter("must be at least 1", param_hint="'--batch-size'")
        if pair_list is not None:
            if files or query:
                raise typer.BadParameter(
                    "give either --list or audio files with -q, not both", param_hint="'--list'"
                )
            _score_list(pair_list, output, clap, skip_bad, device, batch_size, progress)
            return
        if not files or not query:
            raise typer.BadParameter(
                "give audio files and at least one -q QUERY, or --list PAIRS.csv",
                param_hint="'FILES'",
            )
        if skip_bad:
            raise typer.BadParameter("only applies to --list", param_hint="'--skip-bad'")
        queries = validate_queries(query)
        for path in files:  # every file is checked before any work (empty ones too)
            audio_info(path)
        if output is not None:
            check_output_file(output)
            refuse_overwriting([output], files)
        model = load_clap(clap, device)
        from ..clap.files import embed_files

        unique = list(dict.fromkeys(files))
        bar = _progress(len(unique), progress)
        try:
            audio = embed_files(
                model,
                unique,
                batch_size=batch_size,
                on_file=(lambda _: bar.update(1)) if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
        text = model.embed_text(queries)
        scores = audio @ text.T
        index = {p: i for i, p in enumerate(unique)}
        if output is not None:  # first: a table printed into a closed pipe ends the command
            _write_long(output, files, queries, scores, index)
        _print_matrix(files, queries, [scores[index[p]].tolist() for p in files], model.name)
        if output is not None:
            console.print(f"wrote {output}")


def _print_matrix(
    files: list[Path], queries: list[str], rows: list[list[float]], model_name: str
) -> None:
    from rich.table import Table

    table = Table(title=Text(f"ATS ({model_name})"), show_header=True, header_style="bold")
    table.add_column("file")
    for q in queries:
        table.add_column(Text(q), justify="right")
    for path, values in zip(files, rows, strict=True):
        table.add_row(Text(str(path)), *(f"{v:.3f}" for v in values))
    console.print(table)


def _write_long(output: Path, files, queries, scores, index) -> None:
    import csv
    import io

    from ..clap.pairs import audio_path_for
    from ..fileio import write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["audio", "caption", "ats"])
    for path in files:
        name = audio_path_for(path, output)  # as a pair list (ats --list) reads its paths
        for j, q in enumerate(queries):
            writer.writerow([name, q, f"{float(scores[index[path], j]):.6f}"])
    write_text(output, buffer.getvalue())


def _score_list(
    pair_list: Path,
    output: Path | None,
    clap: str | None,
    skip_bad: bool,
    device: str,
    batch_size: int,
    progress: bool,
) -> None:
    import math

    from ..clap import load_clap
    from ..clap.files import score_pairs
    from ..clap.pairs import describe_bad, read_pairs, write_pairs
    from ..errors import DataError
    from ..fileio import check_output_file, refuse_overwriting

    if output is None:
        raise typer.BadParameter("--list needs -o OUT.csv", param_hint="'--output'")
    check_output_file(output)
    refuse_overwriting([output], [pair_list])
    pairs = read_pairs(pair_list)
    refuse_overwriting([output], dict.fromkeys(row.audio for row in pairs.rows))  # each once
    if pairs.bad and not skip_bad:
        raise DataError(describe_bad(pairs) + "; fix them or pass --skip-bad")
    good = [r for r in pairs.rows if r.problem is None]
    if not good:
        raise DataError(describe_bad(pairs) + "; no row can be scored")
    model = load_clap(clap, device)
    failed: dict[Path, str] = {}
    num_files = len({r.audio for r in good})
    bar = _progress(num_files, progress)
    try:
        values = score_pairs(
            model,
            [r.audio for r in good],
            [r.caption for r in good],
            batch_size=batch_size,
            on_file=(lambda _: bar.update(1)) if bar is not None else None,
            on_error=lambda path, exc: failed.__setitem__(path, str(exc)),
        )
    finally:
        if bar is not None:
            bar.close()
    by_line: dict[int, float] = {}
    for row, value in zip(good, values, strict=True):
        if row.audio in failed:
            row.problem = failed[row.audio]
        else:
            by_line[row.line] = value
    if failed and not skip_bad:  # found while reading the audio (NaN samples, silence, ...)
        raise DataError(describe_bad(pairs) + "; fix them or pass --skip-bad")
    if not by_line:  # every file failed once read
        raise DataError(describe_bad(pairs) + "; no row can be scored")
    scores = [by_line.get(r.line, math.nan) for r in pairs.rows]
    write_pairs(output, pairs, scores)
    scored = sum(1 for s in scores if not math.isnan(s))
    num_files -= len(failed)
    console.print(
        f"scored {scored} of {len(pairs.rows)} pairs ({num_files} file"
        f"{'' if num_files == 1 else 's'}) with {model.name}",
    )
    if pairs.bad:
        err_console.print(
            Text.assemble(("skipped:", "yellow"), f" {describe_bad(pairs)}"), soft_wrap=True
        )
    console.print(f"wrote {output}")
