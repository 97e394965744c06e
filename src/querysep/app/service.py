"""What the web app does for one request, without any web framework.

:class:`SeparationService` checks a request (the recording, the queries, the model and the
advanced settings: segment length, overlap, device and the level normalization of
``separate --normalize``) with the same checks and messages as ``querysep separate``,
separates the recording to one WAV per query plus the residual, scores each output (ATS)
and draws the spectrogram figure of ``separate --plot``. Loaded models are shared between
requests; each request builds its own :class:`~querysep.Separator` around them.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..api import MAX_SEGMENT_SECONDS, Separator, check_segment
from ..audio.io import AudioInfo, audio_info
from ..clap import AudioTextModel, load_clap
from ..data.manifest import AUDIO_EXTENSIONS
from ..errors import AudioError, ConfigError, ModelNotFoundError, QueryError
from ..models.separator import TextQueriedSeparator
from ..models.text import validate_queries
from ..outputs import plan_outputs
from ..plotting import plot_files
from ..pretrained import DEFAULT_MODEL, TEST_TINY, list_models, load_model, resolve_device
from .workspace import Workspace

__all__ = ["LIMITS", "AppConfig", "SeparationResult", "SeparationService", "example_rows"]

Progress = Callable[[float, str], None]

# Queries for the bundled examples (examples/README.md); other files get their name's words.
_EXAMPLE_QUERIES = {
    "dog-and-rain": "a dog barking\nrain",
    "rooster-and-church-bells": "a rooster crowing\nchurch bells",
    "typing-and-crying-baby": "keyboard typing\na baby crying",
}


# The range of each numeric setting of AppConfig: (least, most, unit). The `querysep app`
# options take the same ranges (tests/app/test_cli.py checks that they agree).
LIMITS: dict[str, tuple[float, float, str]] = {
    "max_upload_mb": (0.001, 100_000.0, "MB"),  # 100 GB
    "max_minutes": (0.001, 24 * 60.0, "min"),  # a day
    "max_segment_seconds": (0.1, float(MAX_SEGMENT_SECONDS), "s"),  # what Separator takes
    "max_queries": (1, 100, ""),
    "concurrency": (1, 64, ""),
    "stop_grace_seconds": (0.0, 3600.0, "s"),
    "max_queue": (1, 10_000, ""),
    "keep_minutes": (1.0, 7 * 24 * 60.0, "min"),  # a week
    "max_disk_gb": (0.01, 10_000.0, "GB"),  # 10 TB
}
_WHOLE = {"max_queries", "concurrency", "max_queue"}  # counts
_NOT_OPTIONS = {"max_queries", "max_queue"}  # settings `querysep app` has no option for


def _bundled_examples() -> Path | None:
    """``examples/`` of a source checkout (editable installs included), if there is one."""
    folder = Path(__file__).resolve().parents[3] / "examples"
    return folder if folder.is_dir() else None


@dataclass(frozen=True)
class AppConfig:
    """Settings of ``querysep app``.

    Args:
        models: Models offered on top of the named ones (names, folders, ``kind:path``);
            the first is the page's default, else :data:`~querysep.pretrained.DEFAULT_MODEL`.
        clap: The audio-text model for ATS scores (``None``: the bundled default).
        text_tokenizer: Tokenizer folder for ``audiosep:`` / ``dcase-baseline:`` models.
        clap_checkpoint: LAION-CLAP ``.pt`` for their query encoder.
        max_upload_mb: Largest upload, in MB.
        max_minutes: Longest recording, in minutes.
        max_segment_seconds: Longest segment a request may ask for (memory grows with the
            segment length and the number of queries).
        max_queries: Most queries in one request.
        concurrency: Requests separated at once (the others wait in the queue).
        stop_grace_seconds: How long a stopping server waits for requests in progress.
        max_queue: Most requests waiting; more are refused with a message.
        keep_minutes: How long uploads and results stay on disk.
        max_disk_gb: Most disk the private folder may use.
        examples: Folder of example recordings shown on the page (``None``: none).

    Raises:
        ConfigError: A number that is not finite or is outside its range in :data:`LIMITS`
            (or a count that is not a whole number).
    """

    models: tuple[str, ...] = ()
    clap: str | None = None
    text_tokenizer: Path | None = None
    clap_checkpoint: Path | None = None
    max_upload_mb: float = 200.0
    max_minutes: float = 30.0
    max_segment_seconds: float = 60.0
    max_queries: int = 8
    concurrency: int = 1
    stop_grace_seconds: float = 5.0
    max_queue: int = 32
    keep_minutes: float = 60.0
    max_disk_gb: float = 4.0
    examples: Path | None = field(default_factory=_bundled_examples)

    def __post_init__(self) -> None:
        for name, (least, most, unit) in LIMITS.items():
            value = getattr(self, name)
            whole = name in _WHOLE
            kind = numbers.Integral if whole else numbers.Real
            if (
                isinstance(value, bool)
                or not isinstance(value, kind)
                or not least <= value <= most  # also refuses NaN
            ):
                option = (
                    "" if name in _NOT_OPTIONS else f" (querysep app --{name.replace('_', '-')})"
                )
                what = "a whole number" if whole else "a number"
                raise ConfigError(
                    f"{name}{option} must be {what} from {least:g} to {most:g}"
                    f"{' ' + unit if unit else ''}, got {value!r}"
                )

    @property
    def model_choices(self) -> list[str]:
        """The models the page offers: those given first, then the named ones.

        The reserved random-weight ``test-tiny`` is offered only when given, and a named
        model whose optional packages are missing (``irm-ldm-esc50`` without diffusers) not
        at all.
        """
        named = [m.name for m in list_models() if m.name != TEST_TINY and not m.missing]
        return list(dict.fromkeys([*self.models, *named]))

    @property
    def default_model(self) -> str:
        return self.models[0] if self.models else DEFAULT_MODEL


def example_rows(folder: Path | None) -> list[tuple[Path, str]]:
    """(recording, queries) for each audio file in ``folder``, sorted by name."""
    if folder is None:
        return []
    rows = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in AUDIO_EXTENSIONS:
            words = [part.replace("-", " ") for part in path.stem.split("-and-")]
            rows.append((path, _EXAMPLE_QUERIES.get(path.stem, "\n".join(words))))
    return rows


def _above(value: float, limit: float) -> str:
    """``value`` (over ``limit``) with the fewest decimals, one at least, that show it over
    ``limit`` as a message shows the limit (``{limit:g}``): 0.52 for 31 s over 0.5 min."""
    shown_limit = float(f"{limit:g}")
    for decimals in range(1, 10):
        text = f"{value:.{decimals}f}"
        if float(text) > shown_limit:
            return text
    return repr(value)


@dataclass(frozen=True)
class SeparationResult:
    """The files of one request, all in its job folder.

    Args:
        queries: The queries, cleaned (see :func:`~querysep.models.text.validate_queries`).
        outputs: One WAV per query, in query order (the input's rate, channels, length).
        residual: The input minus the sum of all outputs.
        ats: Each output's ATS against its query (NaN for a silent output: ``None`` in
            :meth:`report`).
        figures: Each output's spectrogram figure (mixture, estimate, residual).
        model: The separation model used.
        clap: The audio-text model that computed ``ats``.
        sample_rate: The input's (and outputs') rate in Hz.
        num_channels: Their channel count.
        seconds: Their length.
        normalize: Whether each segment was scaled to peak 0.9 for the network
            (``querysep separate --normalize``).
        answered_as: With a model that answers each query as the nearest of its training
            texts (the bundled default), that text for each query; ``None`` otherwise.
        far: With such a model, whether each query is far from every training text (likely
            a sound it was not trained on; :meth:`querysep.Separator.query_matches`), or
            ``None`` for each where its encoder has no calibrated threshold.
    """

    queries: list[str]
    outputs: list[Path]
    residual: Path
    ats: list[float]
    figures: list[Path]
    model: str
    clap: str
    sample_rate: int
    num_channels: int
    seconds: float
    normalize: bool = False
    answered_as: list[str] | None = None
    far: list[bool | None] | None = None

    def per_query(self) -> list[tuple[str, str, bool | None, Path, float]]:
        """``(query, text it was answered as, far, output, ATS)`` for each query; without
        a bank of texts the text is the query and ``far`` is ``None``."""
        unknown = [None] * len(self.queries)
        return list(
            zip(
                self.queries,
                self.answered_as or self.queries,
                self.far or unknown,
                self.outputs,
                self.ats,
                strict=True,
            )
        )

    def report(self) -> dict[str, Any]:
        """A JSON-ready summary (file names, not paths)."""
        return {
            "model": self.model,
            "ats_model": self.clap,
            "sample_rate": self.sample_rate,
            "channels": self.num_channels,
            "seconds": round(self.seconds, 3),
            "normalize": self.normalize,
            "outputs": [
                {
                    "query": q,
                    "answered_as": t,
                    "far_from_training": f,
                    "file": p.name,
                    "ats": None if math.isnan(a) else round(a, 4),
                }
                for q, t, f, p, a in self.per_query()
            ],
            "residual": self.residual.name,
        }


class SeparationService:
    """Checks and runs separation requests; safe to call from several threads.

    Args:
        config: The app's settings.
        workspace: Where uploads live and outputs are written.
    """

    def __init__(self, config: AppConfig, workspace: Workspace) -> None:
        self.config = config
        self.workspace = workspace
        self._models: dict[tuple[str, str], TextQueriedSeparator] = {}
        self._claps: dict[str, AudioTextModel] = {}
        self._lock = threading.Lock()
        self._busy = 0  # requests being separated now
        self._busy_lock = threading.Lock()

    @property
    def busy(self) -> int:
        """How many requests are being separated right now."""
        return self._busy

    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        with self._busy_lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy -= 1

    # ------------------------------------------------------------------ models
    def _loading(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.text_tokenizer is None and self.config.clap_checkpoint is None:
            return contextlib.nullcontext()
        from ..models.upstream import upstream_options

        return upstream_options(self.config.text_tokenizer, self.config.clap_checkpoint)

    def model(self, spec: str, device: torch.device) -> TextQueriedSeparator:
        """The separator ``spec`` on ``device``, loaded once and then shared."""
        key = (spec, str(device))
        with self._lock:
            if key not in self._models:
                with self._loading():
                    self._models[key] = load_model(spec, device)
            return self._models[key]

    def clap(self, device: torch.device) -> AudioTextModel:
        """The audio-text model for ATS on ``device``, loaded once and then shared."""
        with self._lock:
            if str(device) not in self._claps:
                self._claps[str(device)] = load_clap(self.config.clap, device)
            return self._claps[str(device)]

    def warm(self) -> None:
        """Load every model given on the command line and the ATS model, on the CPU.

        A bad ``--model`` or ``--clap`` fails here, before the server starts, with the
        message ``querysep separate`` gives.
        """
        cpu = torch.device("cpu")
        for spec in self.config.models or (DEFAULT_MODEL,):
            self.model(spec, cpu)
        self.clap(cpu)

    # ------------------------------------------------------------------ requests
    def parse_queries(self, text: str | None) -> list[str]:
        """One query per non-blank line, checked as ``separate -q`` checks them."""
        lines = [line for line in (text or "").splitlines() if line.strip()]
        queries = validate_queries(lines or [text or ""])  # nothing at all: "empty query"
        if len(queries) > self.config.max_queries:
            raise QueryError(
                f"{len(queries)} queries: at most {self.config.max_queries} at once (one per line)"
            )
        return queries

    def check_recording(self, path: str | os.PathLike[str] | None) -> AudioInfo:
        """Refuse a missing, unreadable, too large or too long recording.

        Returns:
            The recording's header (rate, channels, length).
        """
        if path is None:
            raise AudioError("no recording: upload an audio file or record one first")
        if not Path(path).exists() and self.workspace.root in Path(path).resolve().parents:
            raise AudioError(  # an upload older than the pruner keeps them
                f"{Path(path).name} is no longer on the server: recordings are kept up to "
                f"{self.config.keep_minutes:g} min (querysep app --keep-minutes; less when the "
                "app's folder passes --max-disk-gb); upload it again"
            )
        limit_mb = self.config.max_upload_mb
        size = Path(path).stat().st_size if Path(path).is_file() else 0
        if size > limit_mb * 1e6:
            raise AudioError(
                f"{Path(path).name} is {_above(size / 1e6, limit_mb)} MB; this app takes files "
                f"of at most {limit_mb:g} MB (querysep app --max-upload-mb)"
            )
        info = audio_info(path)
        if info.duration > self.config.max_minutes * 60:
            raise AudioError(
                f"{Path(path).name} lasts {_above(info.duration / 60, self.config.max_minutes)} "
                f"min; this app takes recordings of at most {self.config.max_minutes:g} min "
                "(querysep app --max-minutes)"
            )
        return info

    def separate(
        self,
        recording: str | os.PathLike[str] | None,
        queries: str | None,
        *,
        model: str | None = None,
        segment_seconds: float | None = 10.0,
        overlap_seconds: float | None = 1.0,
        device: str | None = "cpu",
        normalize: bool | None = False,
        progress: Progress | None = None,
    ) -> SeparationResult:
        """Separate ``recording`` into one WAV per line of ``queries`` plus the residual.

        Args:
            recording: The uploaded or recorded file.
            queries: One query per line.
            model: One of :attr:`AppConfig.model_choices` (``None``: the default).
            segment_seconds: Length of the segments the model sees.
            overlap_seconds: Crossfaded overlap between segments.
            device: ``cpu``, ``cuda``, ``mps`` or ``auto``.
            normalize: Scale each segment to peak 0.9 for the network and the outputs back,
                as ``querysep separate --normalize`` does (for quiet recordings); ``None``
                is off.
            progress: Called with (fraction done, what is being done).

        Raises:
            QuerysepError: Anything wrong with the request, with the message
                ``querysep separate`` gives for the same input.
        """
        with self._working():
            return self._separate(
                recording,
                queries,
                model,
                segment_seconds,
                overlap_seconds,
                device,
                _flag(normalize, "normalize"),
                progress,
            )

    def _separate(
        self,
        recording: str | os.PathLike[str] | None,
        queries: str | None,
        model: str | None,
        segment_seconds: float | None,
        overlap_seconds: float | None,
        device: str | None,
        normalize: bool,
        progress: Progress | None,
    ) -> SeparationResult:
        report = progress or (lambda fraction, what: None)
        items = self.parse_queries(queries)
        segment = math.nan if segment_seconds is None else float(segment_seconds)
        overlap = math.nan if overlap_seconds is None else float(overlap_seconds)
        check_segment(segment, overlap)
        if segment > self.config.max_segment_seconds:
            raise ConfigError(
                f"a segment of {segment:g} s is over this app's limit of "
                f"{self.config.max_segment_seconds:g} s (querysep app --max-segment-seconds)"
            )
        dev = resolve_device(device or "cpu")
        spec = model or self.config.default_model
        if spec not in self.config.model_choices:
            raise ModelNotFoundError(
                f"unknown model {spec!r}: this app offers "
                f"{', '.join(self.config.model_choices)} (querysep app --model adds others)"
            )
        info = self.check_recording(recording)
        assert recording is not None
        source = Path(recording)
        report(0.0, "loading the model")
        sep = Separator(
            self.model(spec, dev),
            device=dev,
            segment_seconds=segment,
            overlap_seconds=overlap,
            clap=self.clap(dev),
            normalize=normalize,
        )
        with self.workspace.job(source) as folder:
            *outputs, residual = plan_outputs([source], items, folder, "wav", residual=True)[0]
            scored = sep.separate_file(
                source,
                items,
                outputs,
                residual=residual,
                return_ats=True,
                on_progress=lambda done: report(0.9 * done, "separating"),
            )
            report(0.9, "drawing spectrograms")
            figures = [
                plot_files(source, out, out.with_suffix(".png"), title=f"query: {q}")
                for q, out in zip(items, outputs, strict=True)
            ]
        matches = sep.query_matches(items)
        return SeparationResult(
            queries=items,
            outputs=list(outputs),
            residual=residual,
            ats=[float(ats) for _, ats in scored],  # type: ignore[misc]
            figures=figures,
            model=spec,
            clap=sep.clap.name,
            sample_rate=info.sample_rate,
            num_channels=info.num_channels,
            seconds=info.duration,
            normalize=normalize,
            answered_as=[m.text for m in matches] if matches else None,
            far=[m.far for m in matches] if matches else None,
        )


def _flag(value: object, what: str) -> bool:
    """A request's on/off setting: ``True``, ``False`` or ``None`` (off); a raw HTTP call's
    ``"false"`` is refused rather than read as on."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise ConfigError(f"{what} must be true or false, got {value!r}")
