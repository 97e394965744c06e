"""Reading, writing and resampling audio files.

Everything goes through ``soundfile`` (libsndfile) and ``soxr``. Arrays are always
``(channels, time)`` float32, the layout the models use, never libsndfile's
``(time, channels)``. Every problem with a file becomes an :class:`~querysep.errors.AudioError`
with a one-line message that names the file, never a libsndfile traceback.

Writes are atomic: audio goes to a hidden ``.<name>.<random>.part<ext>`` file next to the
target and is renamed over it only once complete, so an interrupted run never leaves a
truncated file behind.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioError

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "RESAMPLE_QUALITY",
    "AudioInfo",
    "AudioWriter",
    "audio_info",
    "iter_audio_blocks",
    "load_audio",
    "resample",
    "save_audio",
    "supported_save_extensions",
]

StrPath = str | os.PathLike[str]

MIN_SAMPLE_RATE = 8_000
"""Lowest sample rate (Hz) accepted when reading or writing a file."""
MAX_SAMPLE_RATE = 384_000
"""Highest sample rate (Hz) accepted when reading or writing a file."""
MAX_CHANNELS = 8
"""Most channels accepted when reading or writing a file (7.1 surround)."""
RESAMPLE_QUALITY = "VHQ"
"""soxr quality preset used by every resampling path, one-shot and streaming."""

# Extension -> (libsndfile major format, default subtype). Only the ones this libsndfile
# build can actually write are offered, see supported_save_extensions().
_SAVE_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
# Subtypes stored as floats are written untouched; everything else is clipped first.
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})
_PCM_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}
_SAVE_BLOCK_FRAMES = 1 << 16


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
        if p.stat().st_size == 0:
            raise AudioError(f"audio file is empty (0 bytes): {p}")
    except OSError as exc:
        raise AudioError(f"cannot access audio file {p}: {exc.strerror or exc}") from exc
    return p


def _reason(exc: BaseException) -> str:
    text = exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)
    text = " ".join(str(text).split()).rstrip(".")
    return text or type(exc).__name__


def _open(p: Path) -> sf.SoundFile:
    try:
        return sf.SoundFile(str(p))
    except (sf.SoundFileError, OSError) as exc:
        raise AudioError(f"cannot read audio file {p}: {_reason(exc)}") from exc


def _info_of(f: sf.SoundFile) -> AudioInfo:
    rate = int(f.samplerate)
    return AudioInfo(
        sample_rate=rate,
        num_channels=int(f.channels),
        num_frames=int(f.frames),
        duration=f.frames / rate if rate > 0 else 0.0,
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
    """Read an audio file's header without decoding its samples.

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
        info = _info_of(f)
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
        _check_info(info, p)
        try:
            frames = f.read(dtype="float32", always_2d=True)
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
    info = audio_info(path)
    return _stream_blocks(Path(path), info, block_frames, sample_rate, mono)


def _stream_blocks(
    p: Path, info: AudioInfo, block_frames: int, sample_rate: int | None, mono: bool
) -> Iterator[np.ndarray]:
    orig_sr = info.sample_rate
    target_sr = orig_sr if sample_rate is None else int(sample_rate)
    channels = 1 if mono else info.num_channels
    stream = None
    if target_sr != orig_sr:
        stream = soxr.ResampleStream(
            orig_sr, target_sr, channels, dtype="float32", quality=RESAMPLE_QUALITY
        )
    # Read at least a few thousand frames at a time: tiny reads are slow, not smaller.
    read_frames = max(4096, math.ceil(block_frames * orig_sr / target_sr))
    pending: list[np.ndarray] = []  # (time, channels) pieces not yet yielded
    num_pending = 0
    position = 0  # input frames read so far

    def take_full_blocks(final: bool) -> Iterator[np.ndarray]:
        nonlocal pending, num_pending
        if num_pending < block_frames and not (final and num_pending):
            return
        joined = pending[0] if len(pending) == 1 else np.concatenate(pending, axis=0)
        start = 0
        while num_pending - start >= block_frames:
            yield np.ascontiguousarray(joined[start : start + block_frames].T)
            start += block_frames
        rest = joined[start:]
        if final and len(rest):
            yield np.ascontiguousarray(rest.T)
            rest = rest[:0]
        pending = [rest] if len(rest) else []
        num_pending = len(rest)

    with _open(p) as f:
        while True:
            try:
                frames = f.read(read_frames, dtype="float32", always_2d=True)
            except (sf.SoundFileError, OSError) as exc:
                raise AudioError(
                    f"cannot decode audio file {p} after {position / orig_sr:.3f} s: {_reason(exc)}"
                ) from exc
            if frames.shape[0] == 0:
                break
            _check_finite(frames, p, position, orig_sr)
            position += frames.shape[0]
            if mono:
                frames = frames.mean(axis=1, keepdims=True, dtype=np.float32)
            if stream is not None:
                frames = stream.resample_chunk(frames)
            if frames.shape[0]:
                pending.append(frames)
                num_pending += frames.shape[0]
                yield from take_full_blocks(final=False)
    if position == 0:
        raise AudioError(f"{p}: contains no audio (0 frames)")
    if stream is not None:
        tail = stream.resample_chunk(np.zeros((0, channels), dtype=np.float32), last=True)
        if tail.shape[0]:
            pending.append(tail)
            num_pending += tail.shape[0]
    yield from take_full_blocks(final=True)


# --------------------------------------------------------------------------- writing


def supported_save_extensions() -> tuple[str, ...]:
    """File extensions :func:`save_audio` can write with this libsndfile build.

    Returns:
        Lower-case extensions with the dot, e.g. ``(".wav", ".flac", ".ogg", ...)``.
    """
    return tuple(
        ext for ext, (fmt, subtype) in _SAVE_FORMATS.items() if sf.check_format(fmt, subtype)
    )


def _resolve_format(p: Path, subtype: str | None) -> tuple[str, str]:
    ext = p.suffix.lower()
    supported = supported_save_extensions()
    if ext not in supported:
        shown = f"'{p.suffix}'" if p.suffix else "no extension"
        raise AudioError(
            f"cannot write {p}: {shown} is not a supported audio format; "
            f"use one of {', '.join(supported)}"
        )
    fmt, default = _SAVE_FORMATS[ext]
    chosen = default if subtype is None else subtype.upper()
    if not sf.check_format(fmt, chosen):
        valid = [s for s in sf.available_subtypes(fmt) if sf.check_format(fmt, s)]
        raise AudioError(
            f"cannot write {p}: subtype '{subtype}' does not fit {fmt}; "
            f"use one of {', '.join(valid)}"
        )
    return fmt, chosen


def _clip_bound(subtype: str, dtype: np.dtype) -> np.floating | None:
    """Largest value that converts to the subtype's top integer without wrapping around."""
    if subtype in _FLOAT_SUBTYPES:
        return None
    bits = _PCM_BITS.get(subtype, 16)
    one = dtype.type(1.0)
    bound = dtype.type(1.0 - 2.0 ** -(bits - 1))
    # 1 - 2**-31 rounds to 1.0 in float32, which would wrap to the most negative integer.
    return bound if bound < one else np.nextafter(one, dtype.type(0.0))


class AudioWriter:
    """Stream audio blocks into a file that appears only once it is complete.

    The blocks go to a hidden temporary file in the target folder (``.<name>.<random>.part``
    plus the real extension), which replaces ``path`` when the ``with`` block ends
    normally. On any exception, Ctrl-C included, the temporary file is deleted and
    ``path`` is left as it was. Parent folders are created. Float samples are clipped to
    ``[-1, 1)`` for every non-float subtype so integers never wrap around.

    Args:
        path: Target file; its extension picks the format (see
            :func:`supported_save_extensions`).
        sample_rate: Sample rate in Hz, within ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``.
        channels: Number of channels, 1 to ``MAX_CHANNELS``.
        subtype: libsndfile subtype; default ``PCM_16`` for wav/flac, ``VORBIS`` for ogg,
            ``OPUS`` for opus, ``MPEG_LAYER_III`` for mp3. ``"FLOAT"`` keeps wav as float.

    Example:
        >>> with AudioWriter("out.wav", 16000, 2) as writer:  # doctest: +SKIP
        ...     for block in blocks:
        ...         writer.write(block)
    """

    def __init__(
        self, path: StrPath, sample_rate: int, channels: int, *, subtype: str | None = None
    ) -> None:
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.format, self.subtype = _resolve_format(self.path, subtype)
        if self.sample_rate != sample_rate or self.channels != channels:
            raise ValueError("sample_rate and channels must be integers")
        try:
            _check_rate_and_channels(self.sample_rate, self.channels, self.path)
        except AudioError as exc:
            raise AudioError(f"cannot write {exc}") from None
        self.num_frames = 0
        self._tmp: Path | None = None
        self._file: sf.SoundFile | None = None

    def __enter__(self) -> AudioWriter:
        if self._file is not None or self._tmp is not None:
            raise RuntimeError("AudioWriter is already open")
        p = self.path
        if p.is_dir():
            raise AudioError(f"cannot write {p}: it is a folder")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AudioError(f"cannot create folder {p.parent}: {exc.strerror or exc}") from exc
        tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}.part{p.suffix}")
        try:
            # Reserve the name (O_EXCL) with the default permissions, then let libsndfile
            # truncate and write it.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            raise AudioError(f"cannot write {p}: {exc.strerror or exc}") from exc
        self._tmp = tmp
        try:
            self._file = sf.SoundFile(
                str(tmp),
                "w",
                samplerate=self.sample_rate,
                channels=self.channels,
                subtype=self.subtype,
                format=self.format,
            )
        except BaseException as exc:
            self._abort()
            if isinstance(exc, sf.SoundFileError | OSError):
                raise AudioError(f"cannot write {p}: {_reason(exc)}") from exc
            raise
        self.num_frames = 0
        return self

    def write(self, block: np.ndarray) -> None:
        """Append one block of samples.

        Args:
            block: Floating-point samples, nominally in ``[-1, 1]``.

        Raises:
            AudioError: The block holds NaN or Inf, or libsndfile fails to write it.

        Shape:
            - block: ``(channels, n)``; ``(n,)`` is accepted for a mono writer.
        """
        if self._file is None:
            raise RuntimeError("AudioWriter.write() called outside its 'with' block")
        data = np.asarray(block)
        if data.ndim == 1 and self.channels == 1:
            data = data[np.newaxis]
        if data.ndim != 2 or data.shape[0] != self.channels:
            raise ValueError(
                f"expected a block shaped ({self.channels}, n), got {tuple(data.shape)}"
            )
        if not np.issubdtype(data.dtype, np.floating):
            raise ValueError(f"expected floating-point samples, got {data.dtype}")
        if data.dtype not in (np.float32, np.float64):
            data = data.astype(np.float32)
        if data.shape[1] == 0:
            return
        frames = data.T
        _check_finite(frames, self.path, self.num_frames, self.sample_rate)
        bound = _clip_bound(self.subtype, data.dtype)
        if bound is not None:
            frames = np.clip(frames, data.dtype.type(-1.0), bound)
        try:
            self._file.write(np.ascontiguousarray(frames))
        except (sf.SoundFileError, OSError) as exc:
            raise AudioError(f"cannot write {self.path}: {_reason(exc)}") from exc
        self.num_frames += data.shape[1]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._abort()
            return
        if self._file is None or self._tmp is None:
            raise RuntimeError("AudioWriter was closed twice")
        try:
            self._file.close()
            os.replace(self._tmp, self.path)
        except BaseException as error:
            self._abort()
            if isinstance(error, sf.SoundFileError | OSError):
                raise AudioError(f"cannot write {self.path}: {_reason(error)}") from error
            raise
        self._file = None
        self._tmp = None

    def _abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink(missing_ok=True)
            self._tmp = None


def save_audio(
    path: StrPath, audio: np.ndarray, sample_rate: int, *, subtype: str | None = None
) -> Path:
    """Write audio to a file atomically (see :class:`AudioWriter`).

    Args:
        path: Target file; the extension picks the format (see
            :func:`supported_save_extensions`). Parent folders are created and an existing
            file is replaced.
        audio: Floating-point samples, nominally in ``[-1, 1]``; clipped to ``[-1, 1)``
            for integer subtypes.
        sample_rate: Sample rate in Hz.
        subtype: libsndfile subtype; default ``PCM_16`` for wav/flac. ``"FLOAT"`` keeps
            wav as 32-bit float.

    Returns:
        The path written.

    Raises:
        AudioError: Unknown extension, unfit subtype, empty audio, NaN/Inf samples, a rate
            or channel count out of range, or a failed write.

    Shape:
        - audio: ``(channels, time)`` or ``(time,)`` for mono.
    """
    p = Path(path)
    data = np.asarray(audio)
    if data.ndim == 1:
        data = data[np.newaxis]
    if data.ndim != 2:
        raise ValueError(f"expected audio shaped (channels, time) or (time,), got {data.shape}")
    if data.shape[0] > MAX_CHANNELS >= data.shape[1]:
        raise AudioError(
            f"cannot write {p}: audio shaped {data.shape} looks like (time, channels); "
            "pass (channels, time)"
        )
    if data.shape[1] == 0:
        raise AudioError(f"cannot write {p}: the audio is empty (0 samples)")
    with AudioWriter(p, sample_rate, data.shape[0], subtype=subtype) as writer:
        for start in range(0, data.shape[1], _SAVE_BLOCK_FRAMES):
            writer.write(data[:, start : start + _SAVE_BLOCK_FRAMES])
    return p
