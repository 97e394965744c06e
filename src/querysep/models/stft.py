"""Short-time Fourier transform on the FFT path (``torch.stft`` / ``torch.istft``).

The upstream ResUNet code computes its STFT with convolution kernels; the transform is the
same (periodic Hann window, ``center=True``, reflect padding), so only float rounding differs.
Both directions always run in float32, also under autocast, because the FFT has no bf16 path.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..schema import config_error

__all__ = ["MAX_N_FFT", "STFT", "check_mel_settings"]

#: The largest FFT a mel front end may use; its filterbank is built whenever it is loaded.
MAX_N_FFT = 2**16


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: object) -> str:
    """A number as a config would write it (``4000``, ``inf``), anything else as its repr."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return repr(value)


def check_mel_settings(
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    filterbank: Callable[[int, int, int, float, float], torch.Tensor],
    centres: Callable[[int, float, float], torch.Tensor] | None = None,
) -> None:
    """Refuse STFT and mel-band settings a log-mel front end cannot work with, naming the
    setting (the checks the small CLAP and the mel VAE share; each adds its own).

    Args:
        filterbank: ``(sample_rate, n_fft, n_mels, f_min, f_max) -> (bins, n_mels)``, the
            front end's own filters, built to find bands that hold no FFT bin.
        centres: ``(n_mels, f_min, f_max) -> (n_mels,)``, the bands' centres in Hz, to name
            the empty band's frequency too.

    Raises:
        ConfigError: (``key`` the setting's name) band edges that are not
            ``0 <= f_min < f_max <= sample_rate / 2``, a hop longer than the FFT, an FFT over
            :data:`MAX_N_FFT`, more bands than FFT bins, or a band that holds no bin.
    """
    nyquist = sample_rate / 2
    if not (_finite(f_min) and _finite(f_max) and 0 <= f_min < f_max <= nyquist):
        edge_ok = _finite(f_max) and 0 < f_max <= nyquist  # then f_min is at fault
        raise config_error(
            "f_min" if edge_ok else "f_max",
            f"must satisfy 0 <= f_min < f_max <= sample_rate / 2 ({nyquist:g}), got f_min "
            f"{_shown(f_min)} and f_max {_shown(f_max)}",
        )
    if hop_length > n_fft:
        raise config_error(
            "hop_length",
            f"{hop_length} is more than n_fft ({n_fft}): samples between the frames would "
            "never be heard",
        )
    if n_fft > MAX_N_FFT:
        raise config_error("n_fft", f"must be at most {MAX_N_FFT}, got {n_fft}")
    if n_mels > n_fft // 2 + 1:
        raise config_error(
            "n_mels",
            f"{n_mels} is more than the {n_fft // 2 + 1} FFT bins of n_fft {n_fft}: a band "
            "would hold none",
        )
    empty = filterbank(sample_rate, n_fft, n_mels, f_min, f_max).sum(0) == 0
    if empty.any():
        band = int(empty.nonzero()[0])
        about = f" (about {float(centres(n_mels, f_min, f_max)[band]):.0f} Hz)" if centres else ""
        raise config_error(
            "n_fft",
            f"{n_fft} gives FFT bins {sample_rate / n_fft:g} Hz apart, too coarse for {n_mels} "
            f"mel bands from {f_min:g} to {f_max:g} Hz: band {band}{about} holds none; use a "
            "larger n_fft or fewer n_mels",
        )


class STFT(nn.Module):
    """Forward and inverse STFT with a fixed Hann window.

    Args:
        n_fft: FFT size (also the window length).
        hop_length: Hop between frames in samples.
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        # Not a parameter and not saved: the window is analytic, like upstream's frozen kernels.
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Complex spectrogram.

        Args:
            waveform: Audio; every leading dimension is kept.

        Returns:
            Complex STFT, frames before bins.

        Shape:
            - waveform: ``(..., time)``
            - output: ``(..., frames, bins)`` complex64
        """
        lead = waveform.shape[:-1]
        flat = waveform.reshape(-1, waveform.shape[-1]).float()
        with torch.autocast(device_type=flat.device.type, enabled=False):
            spec = torch.stft(
                flat,
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                win_length=self.n_fft,
                window=self.window.to(flat.device),
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
        return spec.transpose(-1, -2).reshape(*lead, spec.shape[-1], spec.shape[-2])

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Waveform from a complex spectrogram, cut or padded to ``length`` samples.

        Shape:
            - spec: ``(..., frames, bins)`` complex
            - output: ``(..., length)``
        """
        lead = spec.shape[:-2]
        flat = spec.reshape(-1, spec.shape[-2], spec.shape[-1]).transpose(-1, -2)
        with torch.autocast(device_type=flat.device.type, enabled=False):
            wave = torch.istft(
                flat.to(torch.complex64),
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                win_length=self.n_fft,
                window=self.window.to(flat.device),
                center=True,
                length=length,
            )
        return wave.reshape(*lead, length)
