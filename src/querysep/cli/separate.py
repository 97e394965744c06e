"""``querysep separate``: write the sound each query describes, for each input file."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from ..outputs import plan_outputs
from ._common import (
    CLAP_CHECKPOINT_OPTION,
    PRECISION_OPTION,
    TEXT_TOKENIZER_OPTION,
    check_upstream_options,
    console,
    err_console,
    handle_errors,
    show_progress,
)


@contextlib.contextmanager
def _clipped_notes() -> Iterator[list[str]]:
    """Collect the :class:`~querysep.api.ClippedWarning` messages raised inside the block
    (every one, not once per place); other warnings are shown as Python shows them."""
    from ..api import ClippedWarning

    notes: list[str] = []
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, ClippedWarning):
            notes.append(str(message))
        else:
            shown(message, category, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("always", ClippedWarning)
        warnings.showwarning = show
        yield notes


def register(app: typer.Typer) -> None:
    @app.command("separate")
    @handle_errors
    def separate_cmd(
        inputs: list[Path] = typer.Argument(
            ..., help="Audio file(s) to separate.", show_default=False
        ),
        query: list[str] = typer.Option(
            ..., "--query", "-q", help="What to extract, e.g. 'a dog barking'. Repeatable."
        ),
        output: str | None = typer.Option(  # a str: a Path would drop a trailing slash
            None,
            "--output",
            "-o",
            metavar="PATH",
            help="Output file (one input and one query) or folder (ending in / or existing) "
            "[default: separated/].",
        ),
        model: str | None = typer.Option(
            None,
            "--model",
            "-m",
            help="Model name, model folder or kind:path [default: the bundled default].",
        ),
        device: str = typer.Option("cpu", help="cpu, cuda, mps or auto."),
        precision: str | None = PRECISION_OPTION,
        text_tokenizer: Path | None = TEXT_TOKENIZER_OPTION,
        clap_checkpoint: Path | None = CLAP_CHECKPOINT_OPTION,
        segment_seconds: float = typer.Option(
            10.0, help="Length of the segments the model sees (at most 3600 s)."
        ),
        overlap_seconds: float = typer.Option(1.0, help="Crossfaded overlap between segments."),
        mono: bool = typer.Option(
            False, "--mono", help="Downmix multichannel input to mono first."
        ),
        fmt: str | None = typer.Option(
            None,
            "--format",
            help="Output format in folder mode: wav (default) or flac; a file given with -o "
            "has its extension's format.",
        ),
        threads: int | None = typer.Option(None, help="CPU threads for torch."),
        plot: bool = typer.Option(
            False,
            "--plot",
            help="Also write <output>.png: mixture, estimate and residual spectrograms.",
        ),
        clap: str | None = typer.Option(
            None,
            "--clap",
            help="Audio-text model for the ATS printed next to each output [default: esc50-clap].",
        ),
        no_ats: bool = typer.Option(
            False, "--no-ats", help="Do not score the outputs (ATS) against their queries."
        ),
        normalize: bool = typer.Option(
            False,
            "--normalize",
            help="Scale each segment to peak at 0.9 (as training mixtures do) for the network "
            "and the estimates back: for recordings far from full scale (quiet ones lose dB "
            "of separation without it).",
        ),
        snap: bool = typer.Option(
            True,
            "--snap/--no-snap",
            help="With a model that answers each query with the nearest of its training "
            "texts (the bundled esc50-minilm does), do so, and show that text; --no-snap "
            "embeds each query as it is.",
        ),
        residual: bool = typer.Option(
            False,
            "--residual",
            help="Also write <stem>__residual.<ext>: the input minus the sum of all the "
            "estimates (everything the queries did not take).",
        ),
    ) -> None:
        """Separate the sound each query describes from each input file."""
        from ..api import MAX_THREADS, Separator, check_outputs, check_segment
        from ..audio.io import audio_info
        from ..fileio import check_output_file, refuse_overwriting
        from ..models.text import validate_queries
        from ..plotting import plot_files
        from ..pretrained import TEST_TINY

        queries = validate_queries(query)
        if fmt not in (None, "wav", "flac"):
            raise typer.BadParameter("must be wav or flac", param_hint="'--format'")
        if threads is not None and not 1 <= threads <= MAX_THREADS:
            raise typer.BadParameter(
                f"must be between 1 and {MAX_THREADS}", param_hint="'--threads'"
            )
        check_segment(segment_seconds, overlap_seconds)
        upstream = check_upstream_options([model], text_tokenizer, clap_checkpoint)
        infos = [audio_info(p) for p in inputs]  # every input is checked before any work
        plan = plan_outputs(list(inputs), queries, output, fmt or "wav", residual=residual)
        named = Path(str(output)) if output is not None else None
        if fmt is not None and plan[0][0] == named and named.suffix.lower() != f".{fmt}":
            raise typer.BadParameter(  # it would be written as its extension says, in silence
                f"applies in folder mode; -o {output} names a file, whose extension sets its "
                "format",
                param_hint="'--format'",
            )
        written = [out for outs in plan for out in outs]
        if plot:  # each estimate's spectrogram beside it: an output too
            pngs = [out.with_suffix(".png") for outs in plan for out in outs[: len(queries)]]
            refuse_overwriting([*written, *pngs], inputs)
            written += pngs
        for out in written:  # before loading the model: no output may be a folder or under a file
            check_output_file(out)
        for info, outs in zip(infos, plan, strict=True):  # nor in a format that cannot hold it
            check_outputs(info, outs, mono=mono)
        with upstream:
            sep = Separator(
                model,
                device=device,
                segment_seconds=segment_seconds,
                overlap_seconds=overlap_seconds,
                num_threads=threads,
                precision=precision,
                clap=clap,
                normalize=normalize,
                snap_queries=snap,
            )
        matches = sep.query_matches(queries)
        answered = [m.text for m in matches] if matches else queries
        name = sep.model.metadata.get("name") or "the model"
        far = [(q, m) for q, m in zip(queries, matches, strict=True) if m.far] if matches else []
        for q, match in far:  # likely not a sound it knows: say so before the work
            err_console.print(
                f"note: {q!r} is far from every text {name} was trained on (cosine "
                f"{match.cosine:.2f} to the nearest, {match.text!r}); it is answered as "
                "that text, so check that it is what you meant",
                soft_wrap=True,
            )
        if not no_ats:
            sep.clap  # noqa: B018 - load it now: a bad --clap fails before any output
        with _clipped_notes() as caught:  # one block: other warnings show once a run
            for path, info, outs in zip(inputs, infos, plan, strict=True):
                rest = outs.pop() if residual else None
                done = sep.separate_file(
                    path,
                    queries,
                    outs,
                    mono=mono,
                    progress=show_progress(info.duration > 60),
                    return_ats=not no_ats,
                    residual=rest,
                )
                for q, text, item in zip(queries, answered, done, strict=True):
                    w, ats = item if isinstance(item, tuple) else (item, None)
                    if ats is None:
                        score = ""
                    else:
                        score = (
                            "  ATS n/a (silent output)" if math.isnan(ats) else f"  ATS {ats:.3f}"
                        )
                    known = "" if text == q else f"  [answered as {text!r}]"
                    console.print(
                        Text.assemble(
                            f"wrote {w}  (", (q, "italic"), f" from {path.name}){known}{score}"
                        ),
                        soft_wrap=True,
                    )
                    if plot:
                        png = plot_files(path, w, w.with_suffix(".png"), title=f"query: {q}")
                        console.print(f"wrote {png}")
                if rest is not None:
                    console.print(
                        f"wrote {rest}  (everything else in {path.name})",
                        soft_wrap=True,
                    )
                for note in caught:  # after the lines of the files they are about
                    err_console.print(f"note: {note}", soft_wrap=True)
                caught.clear()
        if not no_ats:
            err_console.print(
                f"ATS: CLAP similarity of each output to its query ({sep.clap.name}; higher = "
                "a closer match; compare values only within one model).",
                soft_wrap=True,
            )
        if sep.model.metadata.get("name") == TEST_TINY:
            err_console.print(
                Text.assemble(
                    ("note:", "yellow"),
                    " model test-tiny has random weights: its output is NOT a real separation "
                    "(it only shows the pipeline works).",
                ),
                soft_wrap=True,
            )
