"""A tiny DCASE-format validation set, and metrics written independently of querysep."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000

# source, noise, snr, caption (the second caption holds a comma and quotes, for CSV quoting)
ROWS = [
    ("tone", "hiss", "0", "a steady pure tone"),
    ("beep", "clicks", "-5", 'a high "beep", repeated'),
    ("clicks", "tone", "5", "clicking"),
    ("hiss", "beep", "10", "white noise hissing"),
]


@dataclass
class ValSet:
    audio_dir: Path
    mixture_list: Path
    rows: list[tuple[str, str, str, str]]


def _clips() -> dict[str, tuple[np.ndarray, str]]:
    """id -> (float32 samples, file extension). Lengths differ so noise is cut and padded."""
    rng = np.random.default_rng(0)
    t = np.arange(int(0.5 * SR)) / SR
    tone = 0.8 * np.sin(2 * np.pi * 440.0 * t)  # loud: tone + hiss at 0 dB peaks above 1
    beep = 0.3 * np.sin(2 * np.pi * 2000.0 * t) * (np.sin(2 * np.pi * 4.0 * t) > 0)
    hiss = 0.3 * rng.standard_normal(int(0.6 * SR))
    clicks = np.zeros(int(0.4 * SR))
    clicks[::800] = 0.9
    return {
        "tone": (tone.astype(np.float32), ".wav"),
        "beep": (beep.astype(np.float32), ".wav"),
        "hiss": (np.clip(hiss, -1, 1).astype(np.float32), ".wav"),
        "clicks": (clicks.astype(np.float32), ".flac"),  # found by id with another extension
    }


def write_csv(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> None:
    import csv

    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def valset(tmp_path: Path) -> ValSet:
    audio = tmp_path / "audio"
    audio.mkdir()
    for name, (samples, ext) in _clips().items():
        subtype = "FLOAT" if ext == ".wav" else "PCM_16"
        sf.write(audio / f"{name}{ext}", samples, SR, subtype=subtype)
    mixture_list = tmp_path / "val.csv"
    write_csv(mixture_list, ["source", "noise", "snr", "caption"], ROWS)
    return ValSet(audio, mixture_list, list(ROWS))


# ------------------------------------------------------------ independent reference code


def read_mono(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == SR
    return data.mean(axis=1).astype(np.float32)


def find(audio_dir: Path, clip_id: str) -> Path:
    return next(p for p in sorted(audio_dir.iterdir()) if p.stem == clip_id)


def dcase_mix(source: np.ndarray, noise: np.ndarray, snr: float) -> tuple[np.ndarray, np.ndarray]:
    """The DCASE protocol written out by hand."""
    s = source.astype(np.float64)
    n = noise.astype(np.float64)
    n = n[: len(s)] if len(n) >= len(s) else np.concatenate([n, np.zeros(len(s) - len(n))])
    n = n * np.sqrt(np.mean(s**2) / (10 ** (snr / 10)) / np.mean(n**2))
    mix = s + n
    peak = np.abs(mix).max()
    if peak > 1:
        mix, s = mix * 0.9 / peak, s * 0.9 / peak
    return mix.astype(np.float32), s.astype(np.float32)


def ref_sdr(s: np.ndarray, e: np.ndarray) -> float:
    s, e = s.astype(np.float64), e.astype(np.float64)
    return float(10 * np.log10(max(np.mean(s**2), 1e-10) / max(np.mean((e - s) ** 2), 1e-10)))


def ref_si_sdr(s: np.ndarray, e: np.ndarray) -> float:
    eps = float(np.finfo(np.float32).eps)
    s, e = s.astype(np.float64), e.astype(np.float64)
    alpha = (eps + np.dot(s, e)) / (np.dot(s, s) + eps)
    proj = alpha * s
    return float(10 * np.log10((eps + np.sum(proj**2)) / (eps + np.sum((e - proj) ** 2))))


def ref_irm_mask(target: np.ndarray, mixture: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """``sqrt(|S|^2 / (|S|^2 + |N|^2))`` (0 where both are 0), ``(bins, frames)``, float64."""
    import torch

    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)

    def spec(x: np.ndarray) -> torch.Tensor:
        signal = torch.from_numpy(np.asarray(x, dtype=np.float64))
        return torch.stft(
            signal, n_fft, hop, n_fft, window, center=True, pad_mode="reflect", return_complex=True
        )

    s_pow = spec(target).abs() ** 2
    n_pow = spec(np.asarray(mixture, np.float64) - np.asarray(target, np.float64)).abs() ** 2
    total = s_pow + n_pow
    mask = torch.where(total > 0, torch.sqrt(s_pow / torch.where(total > 0, total, 1.0)), 0.0)
    return mask.numpy()


def ref_irm(target: np.ndarray, mixture: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """The oracle IRM estimate: the mask above on the mixture's STFT, mixture phase, istft.

    Clips of at most ``n_fft // 2`` samples are zero-padded to ``n_fft // 2 + 1`` first (reflect
    padding needs more) and the estimate cut back.
    """
    import torch

    length = len(mixture)
    padded = max(length, n_fft // 2 + 1)
    mix = np.zeros(padded)
    tgt = np.zeros(padded)
    mix[:length], tgt[:length] = mixture, target
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    x = torch.stft(
        torch.from_numpy(mix), n_fft, hop, n_fft, window, center=True, return_complex=True
    )
    masked = torch.from_numpy(ref_irm_mask(tgt, mix, n_fft, hop)) * x
    estimate = torch.istft(masked, n_fft, hop, n_fft, window, center=True, length=padded)
    return estimate.numpy()[:length]
