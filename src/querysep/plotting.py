"""Spectrogram figures of a separation: mixture, estimate and residual (mixture - estimate)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .fileio import AtomicFile

__all__ = ["plot_files", "plot_separation"]


def _log_spectrogram(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Magnitude in dB, ``(bins, frames)`` float32, of a mono signal (Hann window), a block
    of frames at a time (30 s at 384 kHz in one go took over a gigabyte)."""
    if audio.shape[-1] < n_fft:
        audio = np.pad(audio, (0, n_fft - audio.shape[-1]))
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop]
    window = np.hanning(n_fft).astype(np.float32)
    out = np.empty((n_fft // 2 + 1, len(frames)), dtype=np.float32)
    block = max(1, 2**22 // n_fft)  # about 16 MB of float32 frames
    for start in range(0, len(frames), block):
        spec = np.abs(np.fft.rfft(frames[start : start + block] * window, axis=-1))
        out[:, start : start + block] = 20 * np.log10(np.maximum(spec, 1e-5)).T
    return out


def plot_separation(
    mixture: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    max_seconds: float | None = 30.0,
) -> Path:
    """Save a PNG with the spectrograms of the mixture, the estimate and the residual.

    Args:
        mixture: The input (multichannel input is averaged to mono for the figure).
        estimate: The separated sound, same shape as ``mixture``.
        sample_rate: Their rate in Hz.
        path: The PNG to write (atomically; other extensions matplotlib knows, such as
            ``.svg`` or ``.pdf``, pick that format).
        title: Figure title, e.g. the query.
        max_seconds: Only the first this many seconds are drawn (``None``: all).

    Returns:
        ``path``.

    Raises:
        OutputError: ``path`` cannot be written (a folder, under a file, no space).

    Shape:
        - mixture, estimate: ``(time,)`` or ``(channels, time)``
    """
    # A bare Figure (no pyplot): no global state, so threads (the web app) may draw at once.
    from matplotlib.figure import Figure

    mix = np.asarray(mixture, dtype=np.float32)
    est = np.asarray(estimate, dtype=np.float32)
    if mix.ndim == 2:
        mix, est = mix.mean(axis=0), est.mean(axis=0)
    if max_seconds is not None:
        n = int(max_seconds * sample_rate)
        mix, est = mix[:n], est[:n]
    n_fft = 1 << max(8, int(np.log2(sample_rate * 0.032)))  # ~32 ms windows
    hop = n_fft // 4
    panels = [("mixture", mix), ("estimate", est), ("residual (mixture - estimate)", mix - est)]
    specs = [_log_spectrogram(x, n_fft, hop) for _, x in panels]
    top = max(float(s.max()) for s in specs)
    fig = Figure(figsize=(9, 7.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    extent = (0.0, len(mix) / sample_rate, 0.0, sample_rate / 2000)
    for ax, (label, _), spec in zip(axes, panels, specs, strict=True):
        im = ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap="magma",
            vmin=top - 80,
            vmax=top,
        )
        ax.set_ylabel("kHz")
        ax.set_title(label, loc="left", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(im, ax=axes, label="dB", shrink=0.8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    with AtomicFile(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.suffix[1:].lower() or "png")
    return path


def plot_files(
    mixture_path: str | os.PathLike[str],
    estimate_path: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    max_seconds: float = 30.0,
) -> Path:
    """:func:`plot_separation` of two audio files (the figure ``separate --plot`` writes).

    Only the first ``max_seconds`` are read, so any length is cheap.

    Args:
        mixture_path: The input; drawn, as the estimate is, as the mean of its channels.
        estimate_path: The separated file, at the mixture's rate.
        path: The image to write (atomically).
        title: Figure title, e.g. ``query: a dog barking``.
        max_seconds: How much of the start to draw.

    Returns:
        ``path``.
    """
    import soundfile as sf

    from .audio.io import _read  # a FLAC input with no length in its header reads too

    rate = sf.info(os.fsencode(estimate_path)).samplerate
    frames = int(max_seconds * rate)

    def start(file: str | os.PathLike[str]) -> np.ndarray:
        """The file's start, downmixed at once as the figure shows it (eight channels of
        30 s at 384 kHz are 370 MB; their mean, 46 MB)."""
        with sf.SoundFile(os.fsencode(file)) as f:
            return _read(f, frames).mean(axis=1, keepdims=True)

    mixture, estimate = start(mixture_path), start(estimate_path)
    shared = min(len(mixture), len(estimate))  # equal unless a file changed under us
    mixture, estimate = mixture[:shared], estimate[:shared]
    return plot_separation(mixture.T, estimate.T, rate, path, title=title, max_seconds=max_seconds)
