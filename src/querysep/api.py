"""High-level separation API: :class:`Separator` and the :func:`separate` one-liner.

Audio at any rate goes in; it is resampled to the model's rate, separated segment by segment
(overlap + crossfade, so memory is bounded by the segment), and resampled back, so every
estimate has the input's rate, channel count and exact length. Several queries on one
mixture run as one batch.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, overload

import numpy as np
import torch
import torch.nn.functional as F

from .audio.chunking import OverlapAdd
from .audio.io import (
    MAX_CHANNELS,
    SILENT_PEAK,
    AudioInfo,
    StreamResampler,
    audio_info,
    check_audible,
    check_duration,
    check_level,
    check_sample_rate,
    iter_audio_blocks,
    resample,
    silent_rows,
)
from .audio.writer import AudioWriter, commit_writers
from .clap import AudioTextModel, load_clap
from .data.mixing import PEAK_AFTER_PROTECTION
from .errors import (
    AudioError,
    CheckpointError,
    ConfigError,
    OutputError,
    QueryError,
    SilentAudioError,
)
from .fileio import check_output_file, new_folders_removed_on_error, refuse_overwriting
from .models.separator import TextQueriedSeparator
from .models.text import NearestTextEncoder, QueryMatch, plain_encoder, validate_queries
from .precision import autocast, resolve_precision
from .pretrained import load_model, resolve_device
from .schema import check_count

__all__ = ["ClippedWarning", "Separator", "check_outputs", "check_segment", "separate"]

ArrayLike = np.ndarray | torch.Tensor


def _check_waveform(audio: ArrayLike, sample_rate: int) -> torch.Tensor:
    """Validate in-memory audio and return it as float32 ``(channels, time)`` on the CPU."""
    check_sample_rate(sample_rate)
    if isinstance(audio, np.ndarray) and not (
        audio.flags.writeable and audio.dtype.isnative and all(s >= 0 for s in audio.strides)
    ):
        # torch takes no negative stride (np.flip, a[:, ::-1]), nor without a warning a
        # read-only array (np.frombuffer, a memmap, np.broadcast_to), nor a big-endian one
        # (">f4"): the samples are only read, from a copy (float32 at once, the copy that
        # would be made below anyway).
        audio = np.array(audio, np.float32 if audio.dtype.kind == "f" else None, order="C")
    try:
        x = torch.as_tensor(audio).detach().to("cpu")
    except (TypeError, ValueError, RuntimeError):
        raise AudioError(
            f"audio must be a numeric array or tensor, got {type(audio).__name__}"
        ) from None
    if not x.is_floating_point():
        hint = " (integer PCM: divide by its full scale, e.g. 32768 for int16)"
        raise AudioError(
            f"audio must hold floating-point samples in [-1, 1], got {x.dtype}"
            + (hint if x.dtype != torch.bool and not x.is_complex() else "")
        )
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2:
        raise AudioError(f"audio must be (time,) or (channels, time), got shape {tuple(x.shape)}")
    if x.shape[0] > MAX_CHANNELS:
        hint = ""
        if x.shape[1] <= MAX_CHANNELS:  # (time, channels), as soundfile.read returns it
            hint = (
                "; audio is (channels, time): for a (time, channels) array, as soundfile.read "
                "returns, pass its transpose (audio.T)"
            )
        raise AudioError(f"{x.shape[0]} channels is more than the {MAX_CHANNELS} supported{hint}")
    if x.shape[-1] == 0 or x.shape[0] == 0:
        raise AudioError("audio is empty (zero samples)")
    check_duration(x.shape[-1], sample_rate, "audio", "too short to separate")
    x = x.float()
    if not torch.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples")
    return x


#: Most CPU threads a Separator (``--threads``) may ask torch for: far more than any CPU has,
#: far fewer than the thread count that crashes torch's thread pool.
MAX_THREADS = 1024


#: The longest segment a Separator runs through the network at once (seconds).
MAX_SEGMENT_SECONDS = 3600


def check_segment(segment_seconds: float, overlap_seconds: float) -> None:
    """Check the segment settings of :class:`Separator` (before loading any model).

    Raises:
        ConfigError: ``segment_seconds`` is not a positive number of at most
            :data:`MAX_SEGMENT_SECONDS`, or ``overlap_seconds`` is not in
            ``[0, segment_seconds)``.
    """
    for name, value in (("segment length", segment_seconds), ("overlap", overlap_seconds)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"the {name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(segment_seconds) and segment_seconds > 0):
        raise ConfigError(
            f"the segment length must be a positive number of seconds, got {segment_seconds}"
        )
    if segment_seconds > MAX_SEGMENT_SECONDS:
        raise ConfigError(
            f"the segment length must be at most {MAX_SEGMENT_SECONDS} s (one hour; a long "
            f"recording is separated segment by segment anyway), got {segment_seconds}"
        )
    if not 0 <= overlap_seconds < segment_seconds:  # also refuses NaN
        raise ConfigError(
            f"the overlap must be at least 0 s and shorter than the {segment_seconds} s "
            f"segment, got {overlap_seconds}"
        )


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _with_threads(method: _Method) -> _Method:
    """Run a :class:`Separator` method with torch's CPU thread count at its ``num_threads``."""

    @functools.wraps(method)
    def run(self: Separator, *args: Any, **kwargs: Any) -> Any:
        with self._threads():
            return method(self, *args, **kwargs)

    return cast(_Method, run)


class ClippedWarning(UserWarning):
    """Samples of an output went beyond full scale and were clipped to fit its format."""


def _keep_float(info: AudioInfo, out: str | os.PathLike[str]) -> str | None:
    """``"FLOAT"`` for a WAV output of a float input; else ``None`` (the format's default)."""
    is_wav = Path(out).suffix.lower() == ".wav"
    return "FLOAT" if info.subtype in ("FLOAT", "DOUBLE") and is_wav else None


def check_outputs(
    info: AudioInfo, outputs: Sequence[str | os.PathLike[str]], *, mono: bool = False
) -> None:
    """Check that each output of an input can be written, before any work.

    Each output gets the input's rate and channel count (1 with ``mono``), in the format its
    extension names; some formats take only some of those (Opus: 8, 12, 16, 24 or 48 kHz;
    Vorbis: at most 200 kHz; MP3: at most two channels), found here rather than after a long
    separation.

    Args:
        info: The input's :func:`~querysep.audio.io.audio_info`.
        outputs: Its output paths (the residual's included).
        mono: The input is downmixed to mono.

    Raises:
        AudioError: An output's format cannot hold the input's rate or channels, or its
            extension names no format querysep writes.
    """
    channels = 1 if mono else info.num_channels
    for out in outputs:
        AudioWriter(out, info.sample_rate, channels, subtype=_keep_float(info, out)).check()


class Separator:
    """Separates sounds described by text queries from recordings.

    Args:
        model: A loaded separator, or a name / folder / ``kind:path`` for
            :func:`querysep.load_model` (``None`` = the default model). A loaded one is used
            as it is, not copied: it is moved to ``device`` and put in eval mode
            (``model.eval()``), and ``channels_last`` changes its network's memory layout.
        device: ``cpu``, ``cuda``, ``mps`` or ``auto``.
        segment_seconds: Length of the segments the model sees (rounded up to the network's
            pooling grid; a last segment, or an input, that ends more than half an STFT hop
            past a multiple of it gets up to a hop of silence after it, cut from the
            estimate: ``ResUNet.end_padding``).
        overlap_seconds: Crossfaded overlap between consecutive segments.
        batch_size: Most (query x channel) items run through the network at once.
        num_threads: CPU threads for torch while this Separator works (``None`` leaves
            torch's setting alone). It is set on entering each call of this Separator
            (loading its models, separating, scoring) and put back on leaving it. How
            torch shares that count between threads depends on its build: calls from several
            threads at once may leave one thread with another's count.
        clap: The audio-text model for ATS scores (``return_ats=True``, :meth:`ats`): a
            loaded :class:`~querysep.clap.AudioTextModel` or a spec for
            :func:`~querysep.clap.load_clap`; ``None`` = the bundled default, loaded on first use.
        precision: ``32`` (the string or the number), ``bf16-mixed``, ``auto`` (bf16
            autocast where the device computes bf16 natively; see
            :func:`querysep.precision.resolve_precision`), or ``None``: the model's own
            default, which is ``auto`` for the upstream checkpoints (``audiosep:``,
            ``dcase-baseline:``; their bf16 outputs agree with float32 to 30 dB SDR or more,
            ``benchmarks/upstream_speed.py``) and ``32`` for every other model, so that their
            outputs are the same on every machine. On a CPU with AVX-512 BF16 bf16 took about
            half the float32 time (default model 0.56x, ResUNet30 0.49x;
            ``benchmarks/precision_speed.py``).
        channels_last: Run the network's convolutions in channels-last memory layout (same
            values, faster oneDNN kernels on CPUs). ``None``: only with bf16.
        compile: Run the network through ``torch.compile`` (needs a C++ compiler on CPUs;
            the first call of each new segment length compiles, which takes a while; see
            ``benchmarks/upstream_speed.py``, variant ``compile``).
        normalize: Scale each segment's channels to peak at 0.9 (where DCASE-style mixing,
            the training mixtures' too, caps the peak) before the network, and the estimates
            back after (a mask model's estimate follows the input's level; its mask does not).
            For recordings far from full scale: on 60 training-fold mixtures the bundled
            model's SDRi fell from 8.35 dB to 5.22 at a -20 dBFS peak and 1.63 at -40 dBFS;
            with ``normalize``, 8.25 at every level (``benchmarks/input_level.py``). Off by
            default: on the fold-4 lists at their own levels it costs 0.2 dB.
        snap_queries: With a model whose text encoder answers each query with the nearest
            of its training texts (:class:`~querysep.models.text.NearestTextEncoder`, the
            bundled ``esc50-minilm``'s), do so; ``False`` embeds each query as it is. Other
            models are unaffected.

    Raises:
        ConfigError: Bad segment, overlap, thread count, device or precision.
        ModelNotFoundError: ``model`` names nothing that can be loaded.
    """

    def __init__(
        self,
        model: str | TextQueriedSeparator | None = None,
        *,
        device: str | torch.device | None = "cpu",
        segment_seconds: float = 10.0,
        overlap_seconds: float = 1.0,
        batch_size: int = 8,
        num_threads: int | None = None,
        precision: str | int | None = None,
        clap: str | AudioTextModel | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        normalize: bool = False,
        snap_queries: bool = True,
    ) -> None:
        check_segment(segment_seconds, overlap_seconds)
        check_count("batch_size", batch_size)
        if num_threads is not None:
            check_count("num_threads", num_threads, 1, MAX_THREADS)
        self.num_threads = None if num_threads is None else int(num_threads)
        self.device = resolve_device(device)
        if precision is not None:  # a bad setting fails before the model loads
            with warnings.catch_warnings():  # warned once, below
                warnings.simplefilter("ignore")
                resolve_precision(precision, self.device)
        with self._threads():
            if isinstance(model, TextQueriedSeparator):
                self.model = model.to(self.device).eval()
            else:
                self.model = load_model(model, self.device)
        if precision is None:
            precision = str(self.model.metadata.get("precision", "32"))
        self.precision = resolve_precision(precision, self.device)
        if channels_last is None:
            channels_last = self.precision == "bf16-mixed"
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model.net.to(memory_format=torch.channels_last)
        self._net = torch.compile(self.model.net) if compile else self.model.net
        self.segment_seconds = float(segment_seconds)
        self.overlap_seconds = float(overlap_seconds)
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        self.snap_queries = bool(snap_queries)
        self._clap = clap

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """torch's CPU thread count at ``num_threads`` for the block, then as it was."""
        if self.num_threads is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    @property
    def clap(self) -> AudioTextModel:
        """The audio-text model behind ATS scores (loaded on first use)."""
        if not isinstance(self._clap, AudioTextModel):
            with self._threads():
                self._clap = load_clap(self._clap, self.device)
        return self._clap

    @_with_threads
    def ats(
        self, estimates: ArrayLike, sample_rate: int, queries: str | Sequence[str]
    ) -> torch.Tensor:
        """ATS of each estimate against its own query: a confidence signal with no reference.

        Args:
            estimates: One estimate per query (channels are averaged).
            sample_rate: Their rate in Hz.
            queries: The queries, in the estimates' order.

        Returns:
            The cosine similarity of each estimate's and its query's CLAP embeddings; NaN for
            a silent estimate (no sample above -100 dBFS: silence has no ATS).

        Shape:
            - estimates: ``(num_queries, channels, time)`` or ``(num_queries, time)``
            - output: ``(num_queries,)``

        Raises:
            QueryError: A query is empty or unusable, or there is not one per estimate.
        """
        items = validate_queries(queries)
        if len(items) != len(estimates):
            raise QueryError(
                f"{len(items)} queries but {len(estimates)} estimates: give one query per estimate"
            )
        if isinstance(estimates, torch.Tensor):
            samples = estimates.detach().cpu().float().numpy()
        else:  # a copy: any strides, byte order or writeability
            samples = np.array(estimates, np.float32)
        audio = self.clap.embed_audio(samples, sample_rate)
        scores = (audio * self.clap.embed_text(items)).sum(-1)
        # channels are averaged for the embedding: silence is judged on that average too (a
        # stereo estimate whose channels cancel is silent, not scored)
        mono = samples.mean(axis=1) if samples.ndim == 3 else samples
        silent = torch.from_numpy(silent_rows(mono, len(items)))
        return scores.masked_fill(silent.to(scores.device), math.nan)

    @property
    def sample_rate(self) -> int:
        """The model's own rate; inputs at other rates are resampled."""
        return self.model.sample_rate

    def encode(self, queries: str | Sequence[str]) -> torch.Tensor:
        """The conditions the network gets for ``queries`` (see ``snap_queries``).

        Shape:
            - output: ``(num_queries, condition_dim)``, on the model's device
        """
        if self.snap_queries:
            return self.model.encode(queries)
        return plain_encoder(self.model.text_encoder).encode(queries).to(self.model.device)

    @property
    def query_bank(self) -> NearestTextEncoder | None:
        """The encoder that answers queries with the nearest training text, where this
        Separator uses one (``snap_queries`` and a model that has one); ``None`` otherwise."""
        encoder = self.model.text_encoder
        return encoder if self.snap_queries and isinstance(encoder, NearestTextEncoder) else None

    def answered_as(self, queries: str | Sequence[str]) -> list[str] | None:
        """The training text each query is answered with, where the model snaps queries
        (see :attr:`query_bank`); ``None`` otherwise."""
        bank = self.query_bank
        return None if bank is None else bank.nearest(queries)

    def query_matches(self, queries: str | Sequence[str]) -> list[QueryMatch] | None:
        """For each query, the training text it is answered with, their cosine similarity,
        and whether the query is far from every training text (so probably names a sound
        the model was not trained on), where the model snaps queries; ``None`` otherwise."""
        bank = self.query_bank
        return None if bank is None else bank.matches(queries)

    def _processor(self, queries: list[str]) -> OverlapAdd:
        """Segment-wise processor for ``queries``, on the network's pooling grid."""
        sr = self.sample_rate
        align = int(getattr(self.model.net, "alignment", 1))
        # Round the segment UP to the grid: rounding down would make a clip exactly
        # segment_seconds long spill a few samples past the segment and cost a second pass.
        seg = max(align, math.ceil(self.segment_seconds * sr / align - 1e-9) * align)
        overlap = min(seg - 1, round(self.overlap_seconds * sr))
        return OverlapAdd(self._make_fn(queries), seg, overlap, align)

    def _make_fn(self, queries: list[str]):
        cond = self.encode(queries)  # (Q, D), encoded once per call
        end_padding = getattr(self.model.net, "end_padding", None)

        @torch.inference_mode()
        def fn(segment: torch.Tensor) -> torch.Tensor:
            num_ch, n = segment.shape
            gain = None
            if self.normalize:  # each channel to the training mixtures' peak; silence stays
                peak = segment.abs().amax(dim=-1, keepdim=True)  # (C, 1)
                gain = torch.where(
                    peak > SILENT_PEAK, PEAK_AFTER_PROTECTION / peak.clamp_min(SILENT_PEAK), 1.0
                )
                segment = segment * gain
            # a segment (the last one) that ends far past a multiple of the network's hop
            # gets a little silence after it (ResUNet.end_padding: its end blew up)
            pad = int(end_padding(n)) if end_padding is not None else 0
            padded = F.pad(segment, (0, pad)) if pad else segment
            items = padded.to(self.device).repeat(len(queries), 1)[:, None, :]  # (Q*C, 1, n')
            conds = cond.repeat_interleave(num_ch, dim=0)
            with autocast(self.precision, self.device):
                outs = [
                    self._net(items[i : i + self.batch_size], conds[i : i + self.batch_size])
                    for i in range(0, items.shape[0], self.batch_size)
                ]
            out = torch.cat(outs)[..., :n].reshape(len(queries), num_ch, n).float().cpu()
            if gain is not None:
                out = out / gain  # back to the input's level
            if not torch.isfinite(out).all():  # never write NaN audio as if it were a result
                name = self.model.metadata.get("name", "the model")
                raise CheckpointError(
                    f"{name} produced NaN or infinite samples from finite audio: its weights "
                    "are broken (a diverged training run, or a damaged file)"
                )
            return out

        return fn

    # ------------------------------------------------------------------ in memory
    @overload
    def separate_tensor(
        self,
        mixture: ArrayLike,
        sample_rate: int,
        queries: str | Sequence[str],
        *,
        return_ats: Literal[False] = False,
        return_residual: Literal[False] = False,
    ) -> torch.Tensor: ...

    @overload
    def separate_tensor(
        self,
        mixture: ArrayLike,
        sample_rate: int,
        queries: str | Sequence[str],
        *,
        return_ats: Literal[True],
        return_residual: Literal[False] = False,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def separate_tensor(
        self,
        mixture: ArrayLike,
        sample_rate: int,
        queries: str | Sequence[str],
        *,
        return_ats: Literal[False] = False,
        return_residual: Literal[True],
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def separate_tensor(
        self,
        mixture: ArrayLike,
        sample_rate: int,
        queries: str | Sequence[str],
        *,
        return_ats: Literal[True],
        return_residual: Literal[True],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    @_with_threads
    def separate_tensor(
        self,
        mixture: ArrayLike,
        sample_rate: int,
        queries: str | Sequence[str],
        *,
        return_ats: bool = False,
        return_residual: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Separate in-memory audio.

        Args:
            mixture: The recording, any rate, mono or multichannel (each channel is separated).
            sample_rate: Its rate in Hz.
            queries: One text query or several.
            return_ats: Also return each estimate's ATS against its query (see :meth:`ats`).
            return_residual: Also return the residual: the mixture minus the sum of all
                estimates ("everything else"), so removing a sound is one call.

        Returns:
            One estimate per query at the input's rate, channels and length; with
            ``return_ats`` and/or ``return_residual``, the tuple ``(estimates, ats,
            residual)`` without the parts not asked for.

        Shape:
            - mixture: ``(time,)`` or ``(channels, time)``
            - output: ``(num_queries, channels, time)`` (ATS: ``(num_queries,)``; residual:
              ``(channels, time)``)

        Raises:
            AudioError: The audio is not a finite floating-point array of a supported shape,
                rate, length and level (60 dB above full scale at most);
                :class:`~querysep.errors.SilentAudioError` when it is silent (no sample above
                -100 dBFS: nothing to separate).
            QueryError: A query is empty or unusable.
        """
        items = validate_queries(queries)
        x = _check_waveform(mixture, sample_rate)
        peak = float(x.abs().max())
        check_audible(peak, "audio", "there is nothing to separate")
        check_level(peak, "audio")
        sample_rate = int(sample_rate)
        length = x.shape[-1]
        model_x = torch.from_numpy(
            np.ascontiguousarray(resample(x.numpy(), sample_rate, self.sample_rate))
        )
        proc = self._processor(items)
        parts = [proc.push(model_x), proc.finish()]
        est = torch.cat([p for p in parts if p.dim() == 3], dim=-1)  # (Q, C, L')
        if sample_rate != self.sample_rate:
            flat = est.reshape(-1, est.shape[-1]).numpy()
            est = torch.from_numpy(
                np.ascontiguousarray(resample(flat, self.sample_rate, sample_rate))
            ).reshape(*est.shape[:2], -1)
        est = _fit_length(est, length)
        if not (return_ats or return_residual):
            return est
        extra = [self.ats(est, sample_rate, items)] if return_ats else []
        if return_residual:
            extra.append(x - est.sum(dim=0))
        return (est, *extra)

    # ------------------------------------------------------------------ files
    @_with_threads
    def separate_file(
        self,
        path: str | os.PathLike[str],
        queries: str | Sequence[str],
        outputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        mono: bool = False,
        progress: bool = False,
        return_ats: bool = False,
        residual: str | os.PathLike[str] | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> list[Path] | list[tuple[Path, float]]:
        """Separate a file to one output file per query, streaming through it.

        Memory is bounded by the segment length, not the file's. Each output has the input's
        rate, channel count (1 with ``mono``) and exact length; it appears only complete. A
        float input (a FLOAT or DOUBLE WAV, which may go beyond full scale) gives float WAV
        outputs, so nothing is clipped and the residual still sums back to the input; other
        inputs give each format's default (16-bit PCM for WAV and FLAC).

        Args:
            path: Input audio file (any format soundfile reads).
            queries: One or more text queries.
            outputs: One output path per query (or one path for one query); the format
                follows each extension.
            mono: Downmix to mono before separating.
            progress: Show a progress bar.
            return_ats: Return ``(path, ATS)`` pairs: each output scored against its query,
                read back from the written file (streamed, so any length works); NaN for an
                output that is silent (no sample above -100 dBFS: silence has no ATS).
            residual: Also write this file: the mixture (downmixed with ``mono``) minus the
                sum of all estimates, same rate, channels and length. It is written with the
                outputs and appears only complete, like them; it is not in the returned list.
            on_progress: Called with the fraction of the file separated so far (0 to 1)
                after each block, e.g. to drive a progress bar in a web page.

        Raises:
            AudioError: The input cannot be read, holds NaN or Inf, goes beyond
                :data:`~querysep.audio.io.MAX_PEAK` (60 dB above full scale) or decodes to
                less than :data:`~querysep.audio.io.MIN_SECONDS` (0.1 s);
                :class:`~querysep.errors.SilentAudioError` when it is silent (no sample
                above :data:`~querysep.audio.io.SILENT_PEAK`, -100 dBFS: nothing to separate;
                known once the whole file is read). No output is written then.
            OutputError: ``outputs`` is not one path per query, or an output cannot be
                written (a folder, under a file, the input itself).
            QueryError: A query is empty or unusable.
        """
        items = validate_queries(queries)
        if isinstance(outputs, (str, os.PathLike)):  # one path, for one query
            outputs = [outputs]
        try:
            outputs = list(outputs)
        except TypeError:
            raise OutputError(
                f"outputs must be a list of paths, got {type(outputs).__name__}"
            ) from None
        if len(outputs) != len(items):
            raise OutputError(
                f"{len(items)} queries but {len(outputs)} output paths: give one path per query"
            )
        targets = [*outputs, *([residual] if residual is not None else [])]
        refuse_overwriting(targets, [path])
        for out in targets:
            check_output_file(out)  # a folder given as an output is named as one
        info = audio_info(path)
        in_sr, total = info.sample_rate, info.num_frames
        check_duration(total, in_sr, path, "too short to separate")
        check_outputs(info, targets, mono=mono)
        num_ch = 1 if mono else info.num_channels
        proc = self._processor(items)
        block = max(proc.segment, self.sample_rate)  # at the model's rate
        with new_folders_removed_on_error(targets):  # a failed run leaves no empty folder
            writers = [  # a .wav past 4 GiB is RF64: its length is the input's, known now
                AudioWriter(out, in_sr, num_ch, subtype=_keep_float(info, out), total_frames=total)
                for out in targets
            ]
            back = [StreamResampler(self.sample_rate, in_sr, num_ch) for _ in items]
            # The residual needs the mixture at the input's rate, in step with the estimates: the
            # decoder hands each piece over before resampling (one decode of the file).
            mixture = None if residual is None else _Frames()
            written = decoded = 0

            def on_frames(piece: np.ndarray) -> None:  # at the input's rate
                nonlocal decoded, peak
                decoded += piece.shape[-1]
                if piece.size:
                    peak = max(peak, float(np.abs(piece).max()))
                    check_level(peak, path)
                if mixture is not None:
                    mixture.push(piece)

            def emit(out: torch.Tensor, last: bool) -> None:
                nonlocal written
                chunks = [
                    back[q](out[q].numpy() if out.dim() == 3 else np.zeros((num_ch, 0)), last=last)
                    for q in range(len(items))
                ]
                # As long as the input decodes to, which a damaged header may misstate (a cut
                # MP3 can claim twice its frames): known for sure only at the end.
                length = decoded if last else max(total, decoded)
                est = np.stack(chunks)[:, :, : length - written]  # every query's chunk is as long
                if last and written + est.shape[-1] < length:
                    est = np.pad(est, ((0, 0), (0, 0), (0, length - written - est.shape[-1])))
                if est.shape[-1] == 0:
                    return
                for writer, chunk in zip(writers, est, strict=False):
                    writer.write(chunk)
                if mixture is not None:
                    writers[-1].write(mixture.take(est.shape[-1]) - est.sum(axis=0))
                written += est.shape[-1]

            total_seconds = total / in_sr
            bar = _progress(progress, total_seconds, "separating")
            done_seconds = peak = 0.0
            opened = []
            try:
                for w in writers:
                    opened.append(w.__enter__())
                blocks = iter_audio_blocks(
                    path,
                    block,
                    sample_rate=self.sample_rate,
                    mono=mono,
                    on_frames=on_frames,
                )
                for blk in blocks:
                    emit(proc.push(torch.from_numpy(blk)), last=False)
                    done_seconds += blk.shape[-1] / self.sample_rate
                    if bar is not None:
                        bar.update(blk.shape[-1] / self.sample_rate)
                    if on_progress is not None:
                        on_progress(min(1.0, done_seconds / total_seconds))
                emit(proc.finish(), last=True)
                # What the file held, which a damaged header may overstate (a cut MP3):
                # measured at its own rate, as separate_tensor does.
                check_duration(decoded, in_sr, path, "too short to separate")
                check_audible(peak, path, "there is nothing to separate")
            except BaseException as exc:
                for w in opened:
                    w.__exit__(type(exc), exc, exc.__traceback__)
                raise
            finally:
                if bar is not None:
                    bar.close()
            commit_writers(opened)  # all or (but for a failed rename) none
        for w in writers:
            if w.clipped:
                warnings.warn(
                    f"{w.path}: {w.clipped} samples beyond full scale were clipped ({w.subtype} "
                    "holds no more; a .wav output of a float input keeps them)",
                    ClippedWarning,
                    stacklevel=2,
                )
        paths = [Path(p) for p in outputs]
        if not return_ats:
            return paths
        from .clap.files import embed_files

        def silent_is_nan(index: int, exc: AudioError) -> None:  # silence has no ATS
            if not isinstance(exc, SilentAudioError):
                raise exc

        # Scored as written (a file the 16-bit rounding silenced is silent too).
        audio = embed_files(self.clap, paths, on_error=silent_is_nan)
        scores = (audio * self.clap.embed_text(items)).sum(-1).tolist()  # NaN where silent
        return list(zip(paths, scores, strict=True))


def _progress(enabled: bool, seconds: float, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=round(seconds, 2),
        unit="s",
        desc=desc,
        leave=False,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]",
    )


class _Frames:
    """A FIFO of ``(channels, n)`` frames: pushed in pieces, taken exactly ``n`` at a time."""

    def __init__(self) -> None:
        self._pieces: collections.deque[np.ndarray] = collections.deque()

    def push(self, piece: np.ndarray) -> None:
        if piece.shape[-1]:
            self._pieces.append(piece)

    def take(self, n: int) -> np.ndarray:
        parts, have = [], 0
        while have < n:
            piece = self._pieces.popleft()  # the decoder runs ahead of the estimates
            part = piece[:, : n - have]
            if part.shape[-1] < piece.shape[-1]:
                self._pieces.appendleft(piece[:, n - have :])
            parts.append(part)
            have += part.shape[-1]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


def _fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    if x.shape[-1] >= length:
        return x[..., :length].contiguous()
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]))


def separate(
    audio: ArrayLike,
    sample_rate: int,
    query: str | Sequence[str],
    *,
    model: str | TextQueriedSeparator | None = None,
    device: str | None = "cpu",
    return_ats: bool = False,
    clap: str | AudioTextModel | None = None,
    return_residual: bool = False,
    normalize: bool = False,
    snap_queries: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """One-liner: separate ``query`` from ``audio`` with the default (or named) model.

    With ``return_ats``, also returns the ATS of each estimate against its query (a float
    tensor, scalar for one query), computed with ``clap`` (default: the bundled model). With
    ``return_residual``, also returns the mixture minus the sum of the estimates. Extras come
    after the estimate in the order ``(estimate, ats, residual)``. ``normalize`` and
    ``snap_queries``: see :class:`Separator`.

    Shape:
        - audio: ``(time,)`` or ``(channels, time)``
        - output: ``(channels, time)`` for one query, ``(num_queries, channels, time)`` for a list
        - residual: ``(channels, time)``
    """
    sep = Separator(model, device=device, clap=clap, normalize=normalize, snap_queries=snap_queries)
    single = isinstance(query, str)
    result = sep.separate_tensor(
        audio, sample_rate, query, return_ats=return_ats, return_residual=return_residual
    )
    if not (return_ats or return_residual):
        return result[0] if single else result
    est, *extra = result
    if single:
        est = est[0]
        if return_ats:
            extra[0] = extra[0][0]
    return (est, *extra)
