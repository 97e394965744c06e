"""Embedding audio files and scoring (audio, text) pairs in bulk.

:func:`embed_file` streams a file of any length through a model with bounded memory and gives
the same embedding :meth:`AudioTextModel.embed_audio` gives for the whole signal.
:func:`score_pairs` embeds each distinct file and each distinct text once, in batches.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..audio.io import audio_info, check_audible, check_duration, iter_audio_blocks, load_audio
from ..errors import AudioError
from .base import (
    _SILENCE_RMS,
    REFERENCE_RMS,
    AudioTextModel,
    check_batch_size,
    repeat_pad,
    window_starts,
)

__all__ = ["embed_file", "embed_files", "score_pairs"]

StrPath = str | os.PathLike[str]

_BLOCK_SECONDS = 30
# Files up to this many samples (at the model's rate; 64 MB of float32) are read at once.
_IN_MEMORY_SAMPLES = 1 << 24
_NO_ATS = "it has no ATS"


def _file_level(path: StrPath, rate: int, block: int) -> tuple[float, float, int]:
    """RMS, peak and length of the file at ``rate`` (one streamed pass)."""
    total = peak = 0.0
    count = 0
    for blk in iter_audio_blocks(path, block, sample_rate=rate, mono=True):
        x = blk[0].astype(np.float64)
        total += float(np.dot(x, x))
        peak = max(peak, float(np.abs(x).max()))
        count += x.shape[-1]
    return (total / count) ** 0.5 if count else 0.0, peak, count


def file_windows(
    model: AudioTextModel, path: StrPath, *, normalize_level: bool = True
) -> np.ndarray:
    """The windows :meth:`AudioTextModel.prepare_windows` would cut from the whole file.

    A file of more than 2**24 samples at the model's rate (about 6 minutes at 48 kHz) is
    streamed twice (once for its level, once for the windows), holding about one block and
    the windows in memory, never the whole signal at once; shorter files are read at once.

    Raises:
        AudioError: A missing, unreadable, empty or NaN-holding file, or one shorter than
            :data:`~querysep.audio.io.MIN_SECONDS`;
            :class:`~querysep.errors.SilentAudioError` for a silent one (no sample above
            :data:`~querysep.audio.io.SILENT_PEAK`, -100 dBFS).

    Shape:
        - output: ``(num_windows, window_samples)``
    """
    rate, size = model.sample_rate, model.window_samples
    info = audio_info(path)
    check_duration(info.num_frames, info.sample_rate, path, "too short to score")
    if info.duration * rate <= _IN_MEMORY_SAMPLES:  # the usual case: one read, no second pass
        audio, _ = load_audio(path, rate, mono=True)
        check_audible(float(np.abs(audio).max()), path, _NO_ATS)
        return model.prepare_windows(audio[0], rate, normalize_level=normalize_level)[0]
    block = max(size, rate * _BLOCK_SECONDS)
    rms, peak, length = _file_level(path, rate, block)
    gain = REFERENCE_RMS / rms if normalize_level and rms > _SILENCE_RMS else 1.0
    if length == 0:
        raise AudioError(f"{path}: the file holds no samples")
    check_audible(peak, path, _NO_ATS)
    starts = window_starts(length, size)
    windows: list[np.ndarray] = []
    buffer = np.zeros(0, np.float32)
    offset = 0  # file position of buffer[0]
    pending = list(starts)
    for blk in iter_audio_blocks(path, block, sample_rate=rate, mono=True):
        buffer = np.concatenate([buffer, blk[0]])
        while pending and (pending[0] + size <= offset + buffer.shape[-1]):
            start = pending.pop(0) - offset
            windows.append(buffer[start : start + size])
        keep_from = (pending[0] - offset) if pending else buffer.shape[-1]
        buffer = buffer[keep_from:]
        offset += keep_from
    for start in pending:  # a signal shorter than one window: padded below
        windows.append(buffer[start - offset :])
    out = np.stack([repeat_pad(w, size) for w in windows]).astype(np.float32, copy=False)
    if gain != 1.0:
        out = (out * np.float32(gain)).astype(np.float32, copy=False)
    return out


def embed_file(
    model: AudioTextModel, path: StrPath, *, normalize_level: bool = True, batch_size: int = 16
) -> torch.Tensor:
    """The L2-normalised embedding of a whole audio file.

    Shape:
        - output: ``(dim,)``
    """
    return embed_files(model, [path], normalize_level=normalize_level, batch_size=batch_size)[0]


def embed_files(
    model: AudioTextModel,
    paths: Sequence[StrPath],
    *,
    normalize_level: bool = True,
    batch_size: int = 16,
    on_file: Callable[[int], None] | None = None,
    on_error: Callable[[int, AudioError], None] | None = None,
) -> torch.Tensor:
    """Embed many files, batching windows across files.

    Args:
        model: The audio-text model.
        paths: Audio files (each read as mono, any rate and length).
        normalize_level: Scale each file to :data:`~querysep.clap.base.REFERENCE_RMS` first.
        batch_size: Windows per forward pass, at least 1.
        on_file: Called with the index of each file once it is embedded (progress bars).
        on_error: Called with the index and error of each file that cannot be read or is
            silent; its embedding is then NaN. Without it the error is raised.

    Raises:
        ConfigError: ``batch_size`` is not a whole number >= 1.

    Shape:
        - output: ``(len(paths), dim)``
    """
    batch_size = check_batch_size(batch_size)
    out = torch.zeros(len(paths), model.dim)
    queue: list[np.ndarray] = []
    owners: list[int] = []
    done = 0

    def flush(upto: int) -> None:
        nonlocal queue, owners, done
        if queue:
            emb = model.embed_windows(np.concatenate(queue), batch_size=batch_size)
            out.index_add_(0, torch.tensor(owners), emb)
        queue, owners = [], []
        for index in range(done, upto):
            out[index] = torch.nn.functional.normalize(out[index], dim=-1)
            if on_file is not None:
                on_file(index)
        done = upto

    failed: list[int] = []
    for index, path in enumerate(paths):
        try:
            windows = file_windows(model, path, normalize_level=normalize_level)
        except AudioError as exc:
            if on_error is None:
                raise
            on_error(index, exc)
            failed.append(index)
            continue
        queue.append(windows)
        owners.extend([index] * len(windows))
        if len(owners) >= batch_size:
            flush(index + 1)
    flush(len(paths))
    out[failed] = math.nan
    return out


def score_pairs(
    model: AudioTextModel,
    audio: Sequence[Path],
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    on_file: Callable[[int], None] | None = None,
    on_error: Callable[[Path, AudioError], None] | None = None,
) -> list[float]:
    """ATS of each ``(audio[i], texts[i])`` pair; each distinct file and text embedded once.

    With ``on_error``, a file that cannot be read or is silent is reported to it and its
    pairs score NaN.

    Raises:
        AudioError: A file that cannot be used (silent included: silence has no ATS).
        QueryError: An empty or overlong text.
    """
    if len(audio) != len(texts):
        raise ValueError(f"{len(audio)} audio files but {len(texts)} texts")
    files = list(dict.fromkeys(Path(p) for p in audio))
    words = list(dict.fromkeys(texts))
    file_index = {p: i for i, p in enumerate(files)}
    text_index = {t: i for i, t in enumerate(words)}
    text_emb = model.embed_text(words)
    report = None if on_error is None else (lambda i, exc: on_error(files[i], exc))
    audio_emb = embed_files(model, files, batch_size=batch_size, on_file=on_file, on_error=report)
    a = torch.tensor([file_index[Path(p)] for p in audio])
    t = torch.tensor([text_index[w] for w in texts])
    return (audio_emb[a] * text_emb[t]).sum(-1).tolist()
