"""The page of ``querysep app`` (gradio), and its ``separate`` API endpoint.

One event does both: the page's button and ``gradio_client`` call the endpoint
``separate`` with (recording, queries one per line[, model, segment length, overlap,
device, normalize level]) and get back (the files: one WAV per query in query order, then
the residual; a JSON report with each output's ATS). The page draws a player, a download
button, the spectrogram figure and the ATS for each query from the same result.
"""

from __future__ import annotations

import html
import math
import re
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import error_line
from .service import SeparationService, example_rows

__all__ = ["build_page", "default_segment", "track_heading"]

_INTRO = """\
# querysep
Drop in a recording (or record one), say what you want to hear, one sound per line, and
press **Separate**. Each sound comes back as its own track; *everything else* is what is
left when all of them are taken out. **ATS** scores how well each track matches its words
(higher is closer; compare values only within one model)."""

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def _plain(text: str) -> str:
    """``text`` shown literally in Markdown (a query is never markup)."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def _devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def _fail(exc: Exception, recording: str | None, workspace: Path | None = None) -> Exception:
    """The page's error for ``exc``: the line ``querysep separate`` prints, or ``exc`` (a bug).

    The upload's private path is shown as its file name, as a command run next to the file
    would show it, and so is any path in the server's workspace (an output's).
    """
    import gradio as gr

    line = error_line(exc)
    if line is None:
        return exc
    if recording:
        line = line.replace(str(recording), Path(recording).name)
    if workspace is not None:  # its folders (jobs/<id>/) go, the file name stays
        line = re.sub(re.escape(str(workspace)) + r"/(?:[\w.-]+/)*", "", line)
    print(f"querysep app: request refused: {line}", file=sys.stderr, flush=True)
    return gr.Error(html.escape(line, quote=False), title="Cannot separate", print_exception=False)


def default_segment(max_segment_seconds: float) -> tuple[float, float]:
    """The page's default (segment length, overlap) in seconds under a segment limit.

    10 s segments with 1 s of overlap, as ``querysep separate`` uses; under a lower limit,
    segments of the limit overlapping by at most half of one, as ``querysep evaluate`` does
    (the overlap must be shorter than the segment).
    """
    segment = min(10.0, max_segment_seconds)
    return segment, min(1.0, segment / 2)


def track_heading(item: dict[str, Any]) -> str:
    """The markdown above a separated track: its query, the training text it was answered
    as (when the model snaps queries and that text differs; flagged when the query is far
    from every training text), and its ATS (n/a when silent)."""
    ats = item["ats"]
    if math.isnan(ats):
        score = "n/a (the output is silent)"
    else:
        score = f"**{ats:.3f}** ({_plain(item['ats_model'])})"
    known = item.get("answered_as")
    far = " (far from every text the model was trained on)" if item.get("far") else ""
    note = f"answered as *{_plain(known)}*{far} · " if known and known != item["title"] else ""
    return f"### {_plain(item['title'])}\n{note}ATS {score}"


def build_page(service: SeparationService) -> Any:
    """The page (a ``gradio.Blocks``), with its ``separate`` endpoint.

    Args:
        service: Runs the requests.

    Returns:
        The ``gradio.Blocks``, not yet queued or launched.
    """
    import gradio as gr

    config = service.config

    def separate(
        recording: str | None,
        queries: str,
        model: str | None,
        segment_seconds: float | None,
        overlap_seconds: float | None,
        device: str | None,
        normalize: bool | None,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
        try:
            result = service.separate(
                recording,
                queries,
                model=model,
                segment_seconds=segment_seconds,
                overlap_seconds=overlap_seconds,
                device=device,
                normalize=normalize,
                progress=lambda fraction, what: progress(fraction, desc=what),
            )
        except Exception as exc:
            raise _fail(exc, recording, service.workspace.root) from None
        tracks = [
            {
                "title": query,
                "audio": str(out),
                "figure": str(fig),
                "ats": ats,
                "ats_model": result.clap,
                "answered_as": known,
                "far": far,
            }
            for (query, known, far, out, ats), fig in zip(
                result.per_query(), result.figures, strict=True
            )
        ]
        tracks.append({"title": None, "audio": str(result.residual)})
        files = [str(p) for p in (*result.outputs, result.residual)]
        return tracks, files, result.report()

    with gr.Blocks(title="querysep", analytics_enabled=False) as page:
        gr.Markdown(_INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                recording = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    label="Recording",
                    elem_id="recording",
                )
                queries = gr.Textbox(
                    label=f"What to separate (one per line, up to {config.max_queries})",
                    placeholder="a dog barking\nrain",
                    lines=3,
                    elem_id="queries",
                )
                model = gr.Dropdown(
                    config.model_choices,
                    value=config.default_model,
                    label="Model",
                    allow_custom_value=True,  # checked by the service, with its own message
                    elem_id="model",
                )
                with gr.Accordion("Advanced settings", open=False):
                    segment_default, overlap_default = default_segment(config.max_segment_seconds)
                    segment = gr.Number(
                        segment_default,
                        label=f"Segment length (s, at most {config.max_segment_seconds:g})",
                        elem_id="segment",
                    )
                    overlap = gr.Number(
                        overlap_default,
                        label="Overlap between segments (s, less than the segment length)",
                        elem_id="overlap",
                    )
                    device = gr.Dropdown(
                        _devices(), value="cpu", label="Device", allow_custom_value=True
                    )
                    normalize = gr.Checkbox(
                        False,
                        label="Normalize level",
                        info="Scale each segment to peak 0.9 for the model and the results back: "
                        "for quiet recordings (as separate --normalize does)",
                        elem_id="normalize",
                    )
                button = gr.Button("Separate", variant="primary", elem_id="separate-button")
                rows = example_rows(config.examples)
                if rows:
                    gr.Examples(
                        [[str(path), text] for path, text in rows],
                        inputs=[recording, queries],
                        label="Examples (click one to load it)",
                        example_labels=[path.name for path, _ in rows],
                        elem_id="examples",
                    )
                gr.Markdown(
                    f"Recordings up to {config.max_upload_mb:g} MB and {config.max_minutes:g} "
                    f"min. Uploads and results are kept for {config.keep_minutes:g} min, then "
                    "deleted."
                )
            with gr.Column(scale=2):
                tracks = gr.State([])

                @gr.render(inputs=tracks)
                def show(items: list[dict[str, Any]]) -> None:
                    if not items:
                        gr.Markdown("The separated sounds will appear here.")
                    for i, item in enumerate(items):
                        with gr.Group(elem_classes=["querysep-track"]):
                            if item["title"] is None:
                                gr.Markdown("### Everything else (the residual)")
                            else:
                                gr.Markdown(track_heading(item))
                            gr.Audio(
                                item["audio"],
                                label="everything else" if item["title"] is None else item["title"],
                                interactive=False,
                                buttons=["download"],
                                elem_id=f"track-{i}",
                            )
                            if item.get("figure"):
                                gr.Image(
                                    item["figure"],
                                    show_label=False,
                                    interactive=False,
                                    elem_id=f"figure-{i}",
                                )

                files = gr.File(
                    label="All files (one per query, then everything else)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="files",
                )
                with gr.Accordion("Report", open=False):
                    report = gr.JSON(label="report", elem_id="report")
        button.click(
            separate,
            inputs=[recording, queries, model, segment, overlap, device, normalize],
            outputs=[tracks, files, report],
            api_name="separate",
            api_description="Separate each line of `queries` from `recording`.",
            concurrency_limit=config.concurrency,
        )
    return page
