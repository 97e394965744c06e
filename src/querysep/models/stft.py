"""Short-time Fourier transform on the FFT path (``torch.stft`` / ``torch.istft``).

The upstream ResUNet code computes its STFT with convolution kernels; the transform is the
same (periodic Hann window, ``center=True``, reflect padding), so only float rounding differs.
Both directions always run in float32, also under autocast, because the FFT has no bf16 path.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["STFT"]


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
