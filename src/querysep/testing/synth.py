"""Deterministic synthetic signals: tones, noise, clicks and mixed scenes."""

from __future__ import annotations

import numpy as np

__all__ = ["clicks", "noise", "scene", "tone", "write_streamed_flac", "write_wav"]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def tone(seconds: float, sample_rate: int, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    """A sine. Shape: ``(time,)`` float32."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, sample_rate: int, seed: int = 0, amp: float = 0.1) -> np.ndarray:
    """White Gaussian noise. Shape: ``(time,)`` float32."""
    return (amp * _rng(seed).standard_normal(round(seconds * sample_rate))).astype(np.float32)


def clicks(seconds: float, sample_rate: int, rate_hz: float = 4.0, amp: float = 0.5) -> np.ndarray:
    """Short decaying clicks at a fixed rate. Shape: ``(time,)`` float32."""
    n = round(seconds * sample_rate)
    out = np.zeros(n, np.float32)
    burst = amp * np.exp(-np.arange(int(0.01 * sample_rate)) / (0.002 * sample_rate))
    step = max(1, int(sample_rate / rate_hz))
    for start in range(0, n, step):
        seg = burst[: n - start]
        out[start : start + len(seg)] += seg.astype(np.float32)
    return out


def scene(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A busy mixture: a gliding tone, amplitude-modulated noise and clicks, peak < 1.

    Shape: ``(time,)`` float32.
    """
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    rng = _rng(seed)
    f0 = 200 + 300 * rng.random()
    glide = 0.25 * np.sin(2 * np.pi * (f0 * t + 20 * np.sin(2 * np.pi * 0.3 * t)))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * (0.5 + rng.random()) * t)
    x = glide + env * noise(seconds, sample_rate, seed, 0.08)[:n] + clicks(seconds, sample_rate)[:n]
    return (x / max(1.0, np.abs(x).max() / 0.9)).astype(np.float32)


def write_wav(path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16"):
    """Write ``audio`` (``(time,)`` or ``(channels, time)``) to ``path`` with soundfile."""
    import soundfile as sf

    data = audio.T if audio.ndim == 2 else audio
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return path


def write_streamed_flac(path, audio: np.ndarray, sample_rate: int):
    """Write ``audio`` as a FLAC with no length in its header, as an encoder writing to a pipe
    leaves it (its STREAMINFO total samples is 0, "unknown")."""
    from pathlib import Path

    path = write_wav(path, audio, sample_rate)
    data = bytearray(Path(path).read_bytes())
    # "fLaC", the STREAMINFO block's 4-byte header, then the total: 36 bits from its byte 13
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO comes first"
    data[8 + 13] &= 0xF0
    data[8 + 14 : 8 + 18] = bytes(4)
    Path(path).write_bytes(bytes(data))
    return path
