"""Writing audio files: :func:`save_audio` and the streaming :class:`AudioWriter`.

The extension picks the format (see :func:`supported_save_extensions`). Writes are atomic
(through :class:`querysep.fileio.AtomicFile`): audio goes to a hidden
``.<name>.<random>.part<ext>`` file next to the target and is renamed over it only once
complete, so an interrupted run never leaves a truncated file behind. Float samples are
clipped to ``[-1, 1)`` for integer subtypes so they never wrap around.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf

from ..errors import AudioError
from ..fileio import AtomicFile
from .io import MAX_CHANNELS, StrPath, _check_finite, _check_rate_and_channels, _reason

__all__ = ["AudioWriter", "commit_writers", "save_audio", "supported_save_extensions"]

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
#: The most bytes of samples written as plain WAV: its sizes are 32-bit (4 GiB), less room
#: for the header's chunks. Beyond, libsndfile's sizes wrap and the file reads back short.
_WAV_MAX_BYTES = 2**32 - 2**16
#: More than a WAV header takes: a length known up front and the frames written are both
#: measured with it, so a WAV chosen for its length is never refused while writing.
_WAV_HEADER_ROOM = 256  # libsndfile: 44 bytes (PCM) to 136 (8-channel float)
_SAMPLE_BYTES = {k: bits // 8 for k, bits in _PCM_BITS.items()}
_SAMPLE_BYTES |= {"ULAW": 1, "ALAW": 1, "FLOAT": 4, "DOUBLE": 8}
_SFE_SYSTEM = 2  # libsndfile's code for an error of the system (a full disk, ...)
#: Above this rate libvorbis crashes the whole process (a segfault), in any channel count.
_VORBIS_MAX_RATE = 200_000


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


def _format_fault(fmt: str, subtype: str, sample_rate: int, channels: int) -> str | None:
    """What a format cannot hold that libsndfile does not say plainly (MP3: "Format not
    recognised") or crashes on (Vorbis above 200 kHz); None when nothing is known."""
    if fmt == "MP3" and channels > 2:
        return f"MP3 holds at most 2 channels, not {channels}"
    if subtype == "VORBIS" and sample_rate > _VORBIS_MAX_RATE:
        return f"Ogg Vorbis takes at most {_VORBIS_MAX_RATE} Hz, not {sample_rate} Hz"
    return None


def _write_reason(exc: BaseException, file: sf.SoundFile | None = None) -> str:
    """Why libsndfile failed to write: for a system error, the system's reason ("No space
    left on device"), which soundfile's exception reduces to "System error"."""
    if not (isinstance(exc, sf.LibsndfileError) and exc.code == _SFE_SYSTEM):
        return _reason(exc)
    try:  # sf_strerror of the file, or (NULL) of the last failed open: soundfile's internals
        handle = file._file if file is not None and file._file is not None else sf._ffi.NULL
        text = sf._ffi.string(sf._snd.sf_strerror(handle)).decode("utf-8", "replace")
    except (AttributeError, TypeError):
        return _reason(exc)
    system = text.partition("System error : ")[2].strip().rstrip(".")
    return system or _reason(exc)


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

    The blocks go to a hidden temporary file in the target folder (an
    :class:`~querysep.fileio.AtomicFile`), which replaces ``path`` when the ``with`` block
    ends normally. On any exception, Ctrl-C included, the temporary file is deleted and
    ``path`` is left as it was. Parent folders are created; a ``path`` that is a folder or
    lies under a file is an :class:`AudioError` on entering. Float samples are clipped to
    ``[-1, 1)`` for every non-float subtype so integers never wrap around; :attr:`clipped`
    counts the samples beyond full scale (``|x| > 1``) that lost more than that last step.

    Args:
        path: Target file; its extension picks the format (see
            :func:`supported_save_extensions`).
        sample_rate: Sample rate in Hz, within ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``.
        channels: Number of channels, 1 to ``MAX_CHANNELS``.
        subtype: libsndfile subtype; default ``PCM_16`` for wav/flac, ``VORBIS`` for ogg,
            ``OPUS`` for opus, ``MPEG_LAYER_III`` for mp3. ``"FLOAT"`` keeps wav as float.
        total_frames: How many frames will be written, when known. A ``.wav`` whose samples
            pass 4 GiB is then written as RF64 (WAV with 64-bit sizes); without it, such a
            ``.wav`` is an :class:`AudioError` once the samples reach the limit.

    Example:
        >>> with AudioWriter("out.wav", 16000, 2) as writer:  # doctest: +SKIP
        ...     for block in blocks:
        ...         writer.write(block)
    """

    def __init__(
        self,
        path: StrPath,
        sample_rate: int,
        channels: int,
        *,
        subtype: str | None = None,
        total_frames: int | None = None,
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
        fault = _format_fault(self.format, self.subtype, self.sample_rate, self.channels)
        if fault is not None:
            raise AudioError(f"cannot write {self.path}: {fault}")
        self._frame_bytes = self.channels * _SAMPLE_BYTES.get(self.subtype, 8)
        if (
            self.format == "WAV"
            and total_frames is not None
            and self._too_big_for_wav(total_frames)
            and sf.check_format("RF64", self.subtype)
        ):
            self.format = "RF64"
        self.num_frames = 0
        self.clipped = 0  # samples beyond what an integer subtype holds, clipped to fit
        self._pending: AtomicFile | None = None
        self._file: sf.SoundFile | None = None

    def _too_big_for_wav(self, num_frames: int) -> bool:
        """Whether ``num_frames`` frames and a header pass what a plain WAV file holds."""
        return num_frames * self._frame_bytes + _WAV_HEADER_ROOM > _WAV_MAX_BYTES

    def check(self) -> None:
        """Check, before any work, that libsndfile writes this format, rate and channel count.

        Some formats limit them (Opus takes 8, 12, 16, 24 or 48 kHz): found here by opening the
        writer on memory, not after a long separation. (The limits libsndfile does not state
        plainly or crashes on, MP3's two channels and Vorbis's 200 kHz, are refused when the
        writer is created.)

        Raises:
            AudioError: The combination cannot be written.
        """
        try:
            with sf.SoundFile(
                io.BytesIO(),
                "w",
                samplerate=self.sample_rate,
                channels=self.channels,
                subtype=self.subtype,
                format=self.format,
            ):
                pass
        except (sf.SoundFileError, OSError, RuntimeError) as exc:
            raise AudioError(
                f"cannot write {self.path}: {_reason(exc)} "
                f"({self.format} {self.subtype}, "
                f"{self.channels} channel(s) at {self.sample_rate} Hz)"
            ) from None

    def __enter__(self) -> AudioWriter:
        if self._file is not None or self._pending is not None:
            raise RuntimeError("AudioWriter is already open")
        pending = AtomicFile(self.path, error=AudioError)
        try:
            self._file = sf.SoundFile(
                os.fsencode(pending.temp),
                "w",
                samplerate=self.sample_rate,
                channels=self.channels,
                subtype=self.subtype,
                format=self.format,
            )
        except BaseException as exc:
            pending.discard()
            if isinstance(exc, sf.SoundFileError | OSError):
                raise AudioError(f"cannot write {self.path}: {_write_reason(exc)}") from exc
            raise
        self._pending = pending
        self.num_frames = 0
        self.clipped = 0
        return self

    def write(self, block: np.ndarray) -> None:
        """Append one block of samples.

        Args:
            block: Floating-point samples, nominally in ``[-1, 1]``.

        Raises:
            AudioError: The block holds NaN or Inf, libsndfile fails to write it (a full disk:
                "No space left on device"), or a WAV (not RF64) file passes 4 GiB.

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
            self.clipped += int(np.count_nonzero((frames < -1.0) | (frames > 1.0)))
            frames = np.clip(frames, data.dtype.type(-1.0), bound)
        try:
            self._file.write(np.ascontiguousarray(frames))
        except (sf.SoundFileError, OSError) as exc:
            reason = _write_reason(exc, self._file)
            raise AudioError(f"cannot write {self.path}: {reason}") from exc
        self.num_frames += data.shape[1]
        if self.format == "WAV" and self._too_big_for_wav(self.num_frames):
            raise AudioError(  # libsndfile would write a file that reads back short
                f"cannot write {self.path}: its samples pass 4 GiB, more than a WAV file holds "
                "(AudioWriter's total_frames makes it RF64)"
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._abort()
            return
        self.finish()
        self.commit()

    def finish(self) -> None:
        """Close the temporary file and flush it to disk, without replacing ``path`` yet.

        The first half of leaving the ``with`` block normally; :meth:`commit` is the
        second. :func:`commit_writers` uses the two to commit several files as one set.

        Raises:
            AudioError: Closing or flushing fails; the temporary file is removed.
        """
        if self._file is None or self._pending is None:
            raise RuntimeError("AudioWriter was closed twice")
        file, pending = self._file, self._pending
        self._file = None
        try:
            file.close()
            pending.sync()
        except BaseException as error:
            self._abort()
            if isinstance(error, sf.SoundFileError | OSError):
                raise AudioError(f"cannot write {self.path}: {_reason(error)}") from error
            raise

    def commit(self) -> None:
        """Rename the finished temporary file over ``path`` (after :meth:`finish`).

        Raises:
            AudioError: The rename fails; the temporary file is removed and ``path`` is
                left as it was.
        """
        if self._file is not None or self._pending is None:
            raise RuntimeError("AudioWriter.commit() needs finish() first")
        pending, self._pending = self._pending, None
        pending.commit()

    def abort(self) -> None:
        """Close and remove the temporary file; ``path`` is left as it was. No-op once done."""
        self._abort()

    def _abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        if self._pending is not None:
            self._pending.discard()
            self._pending = None


def commit_writers(writers: Sequence[AudioWriter]) -> None:
    """Commit several open writers as one set, as :func:`~querysep.fileio.atomic_files` does.

    Every file is closed and flushed first, and only then are they renamed over their
    outputs, in order. On any failure, Ctrl-C included, the writers not yet committed are
    aborted: no temporary file stays behind, and only a failed rename (or a crash) between
    the renames can leave the first outputs new and the later ones as they were.

    Args:
        writers: Writers inside their ``with`` blocks (entered and not yet closed).

    Raises:
        AudioError: A file cannot be closed, flushed or renamed.
    """
    try:
        for writer in writers:
            writer.finish()
        for writer in writers:
            writer.commit()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise


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
            wav as 32-bit float. A ``.wav`` whose samples pass 4 GiB is written as RF64.

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
    with AudioWriter(
        p, sample_rate, data.shape[0], subtype=subtype, total_frames=data.shape[1]
    ) as writer:
        for start in range(0, data.shape[1], _SAVE_BLOCK_FRAMES):
            writer.write(data[:, start : start + _SAVE_BLOCK_FRAMES])
    return p
