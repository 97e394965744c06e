"""Reading and resampling audio files; writing lives in :mod:`querysep.audio.writer`.

Everything goes through ``soundfile`` (libsndfile) and ``soxr``. Arrays are always
``(channels, time)`` float32, the layout the models use, never libsndfile's
``(time, channels)``. Every problem with a file becomes an :class:`~querysep.errors.AudioError`
with a one-line message that names the file, never a libsndfile traceback. Resampling, one
shot (:func:`resample`) or streaming (:class:`StreamResampler`), uses one soxr quality,
:data:`RESAMPLE_QUALITY`.

``AudioWriter``, ``save_audio`` and ``supported_save_extensions`` can still be imported from
here; they are defined in :mod:`querysep.audio.writer`.
"""

from __future__ import annotations

import math
import numbers
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioError, SilentAudioError

if TYPE_CHECKING:  # defined in .writer, re-exported lazily (see __getattr__)
    from .writer import AudioWriter as AudioWriter
    from .writer import save_audio as save_audio
    from .writer import supported_save_extensions as supported_save_extensions

__all__ = [
    "MAX_CHANNELS",
    "MAX_PEAK",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "MIN_SECONDS",
    "RESAMPLE_QUALITY",
    "SILENT_PEAK",
    "AudioInfo",
    "StreamResampler",
    "audio_info",
    "check_audible",
    "check_duration",
    "check_level",
    "check_sample_rate",
    "iter_audio_blocks",
    "load_audio",
    "resample",
    "silent_rows",
]

_MOVED_TO_WRITER = frozenset({"AudioWriter", "save_audio", "supported_save_extensions"})


def __getattr__(name: str) -> Any:
    """Keep ``from querysep.audio.io import save_audio`` (and the writer's others) working."""
    if name in _MOVED_TO_WRITER:
        from . import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


StrPath = str | os.PathLike[str]

#: Audio whose every sample is at most this in magnitude (-100 dBFS) is silent: there is
#: nothing in it to separate, and no sound whose ATS could be scored.
SILENT_PEAK = 1e-5


def silent_rows(audio: np.ndarray, rows: int) -> np.ndarray:
    """Which of ``rows`` signals are silent (no sample above :data:`SILENT_PEAK`; a NaN
    counts as silent): where an ATS is NaN, since silence has none.

    Shape:
        - audio: ``(rows, ...)`` (each row's samples, any channels); ``(time,)`` for one row
        - output: ``(rows,)`` bool
    """
    peaks = np.abs(np.asarray(audio)).reshape(rows, -1).max(axis=-1, initial=0.0)
    return ~(peaks > SILENT_PEAK)


def check_audible(peak: float, where: StrPath, consequence: str) -> None:
    """Raise :class:`~querysep.errors.SilentAudioError` when ``peak`` <= :data:`SILENT_PEAK`.

    Args:
        peak: The largest absolute sample of the audio.
        where: What the audio is, for the message (a path).
        consequence: Why silence is a problem here (``"there is nothing to separate"``).
    """
    if not peak > SILENT_PEAK:
        dbfs = 20 * math.log10(SILENT_PEAK)
        raise SilentAudioError(f"{where}: silent (no sample above {dbfs:g} dBFS): {consequence}")


#: The loudest sample accepted for separation, 60 dB above full scale. A float file may go
#: beyond full scale, but this far it was written with integer scaling (peaks near 32768) or
#: is broken, and a separator trained on audio near full scale returns nothing useful for it.
MAX_PEAK = 1000.0


def check_level(peak: float, where: StrPath) -> None:
    """Raise :class:`~querysep.errors.AudioError` when ``peak`` > :data:`MAX_PEAK`.

    Args:
        peak: The largest absolute sample of the audio.
        where: What the audio is, for the message (a path).
    """
    if peak > MAX_PEAK:
        raise AudioError(
            f"{where}: samples far beyond full scale (peak {peak:.3g}, "
            f"{20 * math.log10(peak):+.0f} dBFS): scale the audio into [-1, 1] (a float file "
            "written with integer scaling: divide by 32768)"
        )


#: The shortest audio (seconds) that is separated or scored: a few STFT windows of any model
#: querysep runs (32 ms at 16 kHz, 64 ms for AudioSep), and about the shortest sound event
#: that a text query can name. Anything shorter is refused rather than turned into noise.
MIN_SECONDS = 0.1


def check_duration(num_frames: int, sample_rate: int, where: StrPath, consequence: str) -> None:
    """Raise :class:`~querysep.errors.AudioError` when the audio is under :data:`MIN_SECONDS`.

    Args:
        num_frames: Samples per channel.
        sample_rate: Their rate in Hz.
        where: What the audio is, for the message (a path).
        consequence: What cannot be done (``"too short to separate"``).
    """
    if num_frames < MIN_SECONDS * sample_rate:
        unit = "sample" if num_frames == 1 else "samples"
        ms = 1000 * num_frames / sample_rate
        # 3 digits, or as many more as it takes not to round up to the minimum (99.98 ms)
        shown = next(
            (f"{ms:.{d}g}" for d in range(3, 10) if float(f"{ms:.{d}g}") < 1000 * MIN_SECONDS),
            f"{ms:.10g}",
        )
        raise AudioError(
            f"{where}: {num_frames} {unit} at {sample_rate} Hz ({shown} ms) is {consequence}: "
            f"at least {MIN_SECONDS:g} s is needed"
        )


MIN_SAMPLE_RATE = 8_000
"""Lowest sample rate (Hz) accepted when reading or writing a file."""
MAX_SAMPLE_RATE = 384_000
"""Highest sample rate (Hz) accepted when reading or writing a file."""
MAX_CHANNELS = 8
"""Most channels accepted when reading or writing a file (7.1 surround)."""


def check_sample_rate(sample_rate: Any, error: type[Exception] = AudioError) -> int:
    """A sample rate given in memory, as an ``int``: a whole number of Hz (``16000`` or
    ``16000.0``, numpy scalars too) within ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``.

    Args:
        sample_rate: The rate to check.
        error: What to raise (:class:`~querysep.errors.AudioError`, or
            :class:`~querysep.errors.ConfigError` for a setting).

    Raises:
        AudioError: (or ``error``) A bool, a non-number, a fraction of a Hz, or a rate out
            of range.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise error(f"the sample rate must be a number of Hz, got {sample_rate!r}")
    try:
        whole = math.isfinite(sample_rate) and sample_rate == int(sample_rate)
    except OverflowError:  # an integer too large for a float: the range check refuses it
        whole = True
    if not whole:
        raise error(f"the sample rate must be a whole number of Hz, got {sample_rate}")
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise error(
            f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    return int(sample_rate)


RESAMPLE_QUALITY = "VHQ"
"""soxr quality preset used by every resampling path, one-shot and streaming."""


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says, read without decoding any samples.

    Args:
        sample_rate: Sample rate in Hz.
        num_channels: Number of channels.
        num_frames: Number of frames (samples per channel).
        duration: Length in seconds.
        format: libsndfile major format, e.g. ``"WAV"``, ``"FLAC"``, ``"OGG"``.
        subtype: libsndfile subtype, e.g. ``"PCM_16"``, ``"FLOAT"``, ``"VORBIS"``.
    """

    sample_rate: int
    num_channels: int
    num_frames: int
    duration: float
    format: str
    subtype: str


# --------------------------------------------------------------------------- validation


def _check_path(path: StrPath) -> Path:
    p = Path(path)
    try:
        if not p.exists():
            raise AudioError(f"audio file not found: {p}")
        if p.is_dir():
            raise AudioError(f"expected an audio file but got a folder: {p}")
        info = p.stat()
        if stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode):  # <(cmd), piped stdin
            raise AudioError(
                f"{p} is a pipe, not a file: audio is read more than once (its header first), "
                "which a pipe cannot give; save it to a file and pass that"
            )
        if not stat.S_ISREG(info.st_mode):
            raise AudioError(f"{p} is not a regular file (a device?): pass an audio file")
        if info.st_size == 0:
            raise AudioError(f"audio file is empty (0 bytes): {p}")
    except OSError as exc:
        raise AudioError(f"cannot access audio file {p}: {exc.strerror or exc}") from exc
    return p


def _reason(exc: BaseException) -> str:
    text = exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)
    text = " ".join(str(text).split()).rstrip(".").removeprefix("Error : ")  # libsndfile's
    return text or type(exc).__name__


def _wav_rate_fault(p: Path) -> str | None:
    """What a RIFF/WAVE header says wrong about the sample rate, or ``None``.

    libsndfile refuses a WAV whose ``fmt`` chunk gives a rate of 0, or one beyond its signed
    32-bit field, with only "SF_INFO struct incomplete"; this reads the chunk itself to say so.
    """
    try:
        with open(p, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    order = "little" if head[:4] == b"RIFF" else "big"
    at = 12
    while at + 8 <= len(head):
        size = int.from_bytes(head[at + 4 : at + 8], order)
        if head[at : at + 4] == b"fmt ":  # the rate: bytes 4-7 of a chunk of 16 or more
            if size < 16 or at + 16 > len(head):
                return None
            rate = int.from_bytes(head[at + 12 : at + 16], order)
            bad = rate == 0 or rate >= 2**31
            return f"its WAV header gives a sample rate of {rate} Hz" if bad else None
        at += 8 + size + (size & 1)
    return None


#: The length libsndfile gives a file whose header has none (SF_COUNT_MAX): a FLAC written to
#: a pipe or other stream, whose STREAMINFO total is 0 ("unknown").
_UNKNOWN_LENGTH = 2**63 - 1
#: libsndfile's "Internal psf_fseek() failed" (SFE_BAD_SEEK).
_SEEK_FAILED = 39


def _read(f: sf.SoundFile, frames: int) -> np.ndarray:
    """Up to ``frames`` frames from where ``f`` stands, as ``(time, channels)`` float32: fewer
    at the end of the file, none past it.

    A file of unknown length reads to its end too. libsndfile decodes its last frames, but
    soundfile then seeks to the end to keep count, which fails there as that end is unknown:
    the frames read run up to the last one the decoder wrote over the NaN the buffer starts
    as (a NaN it decodes before that is kept, for the caller to refuse).
    """
    if f.frames != _UNKNOWN_LENGTH:
        return f.read(frames, dtype="float32", always_2d=True)
    out = np.full((frames, f.channels), np.nan, dtype=np.float32)
    try:
        return f.read(frames, out=out)
    except sf.LibsndfileError as exc:
        if exc.code != _SEEK_FAILED:
            raise
    written = np.flatnonzero(~np.isnan(out).all(axis=1))
    return out[: written[-1] + 1 if written.size else 0]


def _count_frames(p: Path, f: sf.SoundFile) -> int:
    """The frames in ``f`` (open at its start), decoding it through when its header has no
    length."""
    if f.frames != _UNKNOWN_LENGTH:
        return int(f.frames)
    try:
        return sum(block.shape[0] for block in _blocks_to_end(f))
    except (sf.SoundFileError, OSError) as exc:
        raise AudioError(f"cannot decode audio file {p}: {_reason(exc)}") from exc


def _blocks_to_end(f: sf.SoundFile) -> Iterator[np.ndarray]:
    """``f``'s frames from where it is to its end, in blocks; the last one is empty."""
    while (block := _read(f, 1 << 16)).shape[0]:
        yield block
    yield block


def _open(p: Path) -> sf.SoundFile:
    try:
        return sf.SoundFile(os.fsencode(p))  # bytes: names that are not UTF-8 open too
    except (sf.SoundFileError, OSError) as exc:
        reason = _wav_rate_fault(p) or _reason(exc)
        if reason.startswith("File does not exist") and p.is_file():  # libsndfile's word for
            # an MPEG stream it cannot decode (a corrupt MP3)
            reason = "not audio it can decode (a corrupt or truncated file?)"
        raise AudioError(f"cannot read audio file {p}: {reason}") from exc


def _info_of(f: sf.SoundFile, num_frames: int | None = None) -> AudioInfo:
    rate = int(f.samplerate)
    num_frames = int(f.frames) if num_frames is None else num_frames
    return AudioInfo(
        sample_rate=rate,
        num_channels=int(f.channels),
        num_frames=num_frames,
        duration=num_frames / rate if rate > 0 else 0.0,
        format=str(f.format),
        subtype=str(f.subtype),
    )


def _check_rate_and_channels(sample_rate: int, num_channels: int, p: Path) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{p}: sample rate {sample_rate} Hz is outside the supported range "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    if not 1 <= num_channels <= MAX_CHANNELS:
        raise AudioError(
            f"{p}: {num_channels} channels; between 1 and {MAX_CHANNELS} are supported"
        )


def _check_info(info: AudioInfo, p: Path) -> None:
    _check_rate_and_channels(info.sample_rate, info.num_channels, p)
    if info.num_frames <= 0:
        raise AudioError(f"{p}: contains no audio (0 frames)")


def _check_finite(frames: np.ndarray, p: Path, offset: int, sample_rate: int) -> None:
    """Raise if ``frames`` (``(time, channels)``) holds NaN or Inf; ``offset`` is its start."""
    finite = np.isfinite(frames)
    if finite.all():
        return
    first = offset + int(np.argmin(finite.all(axis=1)))
    raise AudioError(
        f"{p}: contains NaN or Inf samples (first at {first / sample_rate:.3f} s, frame {first})"
    )


def _check_target_rate(sample_rate: int | None) -> None:
    if sample_rate is not None and (
        isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer)
    ):
        raise ValueError(f"sample_rate must be an integer, got {sample_rate!r}")
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")


# --------------------------------------------------------------------------- reading


def audio_info(path: StrPath) -> AudioInfo:
    """Read an audio file's header without decoding its samples (a file whose header gives
    no length, such as a FLAC written to a pipe, is decoded once to count them).

    Args:
        path: Any file libsndfile reads (wav, flac, ogg/vorbis, opus, mp3, ...).

    Returns:
        The file's :class:`AudioInfo`.

    Raises:
        AudioError: The file is missing, a folder, empty, unreadable or unsupported, has no
            frames, a sample rate outside ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE`` or more than
            ``MAX_CHANNELS`` channels.
    """
    p = _check_path(path)
    with _open(p) as f:
        info = _info_of(f, _count_frames(p, f))
    _check_info(info, p)
    return info


def load_audio(
    path: StrPath, sample_rate: int | None = None, *, mono: bool = False
) -> tuple[np.ndarray, int]:
    """Read a whole audio file as float32, optionally resampled and downmixed.

    Args:
        path: Any file libsndfile reads (wav, flac, ogg/vorbis, opus, mp3, ...).
        sample_rate: Rate to return the audio at, resampling with soxr (quality
            ``RESAMPLE_QUALITY``) if the file differs. ``None`` keeps the file's rate.
        mono: Average all channels into one.

    Returns:
        ``(audio, rate)``: the samples and the rate they are at (``sample_rate`` if given,
        else the file's).

    Raises:
        AudioError: As :func:`audio_info`, and also when the samples hold NaN or Inf or
            cannot be decoded.

    Shape:
        - audio: ``(channels, time)``, ``(1, time)`` when ``mono``.
    """
    _check_target_rate(sample_rate)
    p = _check_path(path)
    with _open(p) as f:
        info = _info_of(f)
        _check_rate_and_channels(info.sample_rate, info.num_channels, p)
        try:
            if info.num_frames == _UNKNOWN_LENGTH:  # no length in its header: read to the end
                frames = np.concatenate(list(_blocks_to_end(f)))  # the empty last: the shape
            else:  # as many frames as the header says: a non-seekable codec (GSM 6.10) needs it
                frames = f.read(info.num_frames, dtype="float32", always_2d=True)
        except (sf.SoundFileError, OSError) as exc:
            raise AudioError(f"cannot decode audio file {p}: {_reason(exc)}") from exc
    if frames.shape[0] == 0:
        raise AudioError(f"{p}: contains no audio (0 frames)")
    _check_finite(frames, p, 0, info.sample_rate)
    if mono:
        audio = frames.mean(axis=1, dtype=np.float32)[np.newaxis]
    else:
        audio = np.ascontiguousarray(frames.T)
    if sample_rate is None:
        return audio, info.sample_rate
    return resample(audio, info.sample_rate, int(sample_rate)), int(sample_rate)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Change the sample rate of a signal with soxr (quality ``RESAMPLE_QUALITY``).

    The output has ``round(time * target_sr / orig_sr)`` samples (soxr's rounding).

    Args:
        audio: float32 or float64 samples; other dtypes are converted to float32.
        orig_sr: Rate of ``audio`` in Hz.
        target_sr: Wanted rate in Hz.

    Returns:
        The resampled signal, same dtype as a float input. When the rates are equal this
        is ``audio`` itself, not a copy.

    Shape:
        - audio: ``(channels, time)`` or ``(time,)``
        - output: same layout, ``time`` scaled by ``target_sr / orig_sr``
    """
    for name, rate in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
            raise ValueError(f"{name} must be a positive integer, got {rate!r}")
    if orig_sr == target_sr:
        return audio
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise ValueError(f"expected audio shaped (channels, time) or (time,), got {audio.shape}")
    if audio.dtype not in (np.float32, np.float64):
        audio = audio.astype(np.float32)
    if audio.shape[-1] == 0:
        return audio.copy()
    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality=RESAMPLE_QUALITY)
    # soxr takes (time, channels); a transposed C-contiguous array is its split-channel
    # layout, so this costs no extra copy on the way in.
    out = soxr.resample(np.ascontiguousarray(audio).T, orig_sr, target_sr, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(out.T)


def iter_audio_blocks(
    path: StrPath,
    block_frames: int,
    sample_rate: int | None = None,
    *,
    mono: bool = False,
    on_frames: Callable[[np.ndarray], None] | None = None,
) -> Iterator[np.ndarray]:
    """Stream an audio file in fixed-size blocks, resampling on the fly.

    Only about one block of the file is in memory at a time, so hour-long recordings are
    fine. Resampling uses one continuous ``soxr.ResampleStream`` flushed at the end, so
    the concatenated blocks equal :func:`load_audio` output (same length, same samples up
    to float rounding). The file is checked (as :func:`audio_info`) when this is called;
    decoding errors and NaN/Inf samples are raised while iterating.

    Args:
        path: Any file libsndfile reads.
        block_frames: Frames per block at the output rate. Every block has exactly this
            many frames except the last, which may be shorter (never empty).
        sample_rate: Output rate; ``None`` keeps the file's rate.
        mono: Average all channels into one.
        on_frames: Called with each piece of the file as decoded, at the file's own rate and
            before resampling (``(channels, n)`` float32, downmixed with ``mono``), so a
            caller that also needs the original-rate signal (a residual) decodes once.

    Returns:
        An iterator of float32 blocks.

    Raises:
        AudioError: As :func:`audio_info`; while iterating, also for undecodable data or
            NaN/Inf samples (the message gives the time of the first one).

    Shape:
        - each block: ``(channels, n)`` with ``n <= block_frames``; ``(1, n)`` when ``mono``.
    """
    if isinstance(block_frames, bool) or not isinstance(block_frames, int) or block_frames < 1:
        raise ValueError(f"block_frames must be a positive integer, got {block_frames!r}")
    _check_target_rate(sample_rate)
    p = _check_path(path)
    with _open(p) as f:  # the header only: a file without a length is not decoded twice
        info = _info_of(f)
    _check_info(info, p)
    return _stream_blocks(p, info, block_frames, sample_rate, mono, on_frames)


class StreamResampler:
    """Continuous soxr resampling (quality ``RESAMPLE_QUALITY``) of consecutive chunks.

    Feeding a signal chunk by chunk, with ``last=True`` on the final call, gives the same
    samples as :func:`resample` on the whole signal (up to float rounding) while holding
    only a chunk at a time. When the rates are equal the chunks pass through unchanged.

    Args:
        orig_sr: Rate of the chunks fed in, in Hz.
        target_sr: Rate of the chunks returned, in Hz.
        channels: Number of channels of every chunk.
    """

    def __init__(self, orig_sr: int, target_sr: int, channels: int) -> None:
        self.channels = int(channels)
        self._stream = None
        if orig_sr != target_sr:
            self._stream = soxr.ResampleStream(
                orig_sr, target_sr, self.channels, dtype="float32", quality=RESAMPLE_QUALITY
            )

    def __call__(self, chunk: np.ndarray, *, last: bool = False) -> np.ndarray:
        """Resample the next chunk.

        Args:
            chunk: The next samples (any length, empty included).
            last: This is the final chunk: flush what soxr still holds.

        Returns:
            float32 samples at ``target_sr``; soxr's delay makes each chunk's length vary,
            but all of them together have ``round(total * target_sr / orig_sr)`` samples.

        Shape:
            - chunk: ``(channels, n)``
            - output: ``(channels, m)``
        """
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 2 or chunk.shape[0] != self.channels:
            raise ValueError(f"expected a chunk shaped ({self.channels}, n), got {chunk.shape}")
        if self._stream is None:
            return chunk
        # soxr takes (time, channels); a transposed (channels, time) C array is that layout.
        out = self._stream.resample_chunk(np.ascontiguousarray(chunk.T), last=last)
        return np.ascontiguousarray(out.T)


def _stream_blocks(
    p: Path,
    info: AudioInfo,
    block_frames: int,
    sample_rate: int | None,
    mono: bool,
    on_frames: Callable[[np.ndarray], None] | None = None,
) -> Iterator[np.ndarray]:
    orig_sr = info.sample_rate
    target_sr = orig_sr if sample_rate is None else int(sample_rate)
    channels = 1 if mono else info.num_channels
    resampler = StreamResampler(orig_sr, target_sr, channels)
    # Read at least a few thousand frames at a time: tiny reads are slow, not smaller.
    read_frames = max(4096, math.ceil(block_frames * orig_sr / target_sr))
    pending: list[np.ndarray] = []  # (channels, n) pieces not yet yielded
    num_pending = 0
    position = 0  # input frames read so far

    def take_full_blocks(final: bool) -> Iterator[np.ndarray]:
        nonlocal pending, num_pending
        if num_pending < block_frames and not (final and num_pending):
            return
        joined = pending[0] if len(pending) == 1 else np.concatenate(pending, axis=1)
        start = 0
        while num_pending - start >= block_frames:
            yield np.ascontiguousarray(joined[:, start : start + block_frames])
            start += block_frames
        rest = joined[:, start:]
        if final and rest.shape[1]:
            yield np.ascontiguousarray(rest)
            rest = rest[:, :0]
        pending = [rest] if rest.shape[1] else []
        num_pending = rest.shape[1]

    def add(chunk: np.ndarray) -> None:
        nonlocal num_pending
        if chunk.shape[1]:
            pending.append(chunk)
            num_pending += chunk.shape[1]

    with _open(p) as f:
        while True:
            try:
                frames = _read(f, read_frames)
            except (sf.SoundFileError, OSError) as exc:
                # The fault is somewhere in the frames this read asked for, not at their start.
                end = position + read_frames
                end = min(end, info.num_frames) if info.num_frames > position else end
                raise AudioError(
                    f"cannot decode audio file {p} between {position / orig_sr:.3f} s and "
                    f"{end / orig_sr:.3f} s: {_reason(exc)}"
                ) from exc
            if frames.shape[0] == 0:
                break
            _check_finite(frames, p, position, orig_sr)
            position += frames.shape[0]
            if mono:
                frames = frames.mean(axis=1, keepdims=True, dtype=np.float32)
            if on_frames is not None:
                on_frames(np.ascontiguousarray(frames.T))
            add(resampler(frames.T))
            yield from take_full_blocks(final=False)
    if position == 0:
        raise AudioError(f"{p}: contains no audio (0 frames)")
    add(resampler(np.zeros((channels, 0), dtype=np.float32), last=True))
    yield from take_full_blocks(final=True)
