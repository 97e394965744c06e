"""AudioLDM's mel front end, and the ways back from a mel spectrogram to a waveform.

The front end is AudioLDM's (``audioldm/audio/stft.py``, ``tools.py``): 16 kHz audio, STFT
with n_fft 1024, hop 160 and a periodic 1024-sample Hann window over reflect-padded, centred
frames; magnitude (not power); 64 Slaney-scale, Slaney-normalised mel filters from 0 to
8000 Hz (librosa's defaults); natural log of the mel magnitudes clamped at 1e-5. Upstream
scales each clip to a peak of 0.5 first; :func:`peak_gain` gives that gain, which IRM-LDM
applies to the mixture and, in training and oracle rows, to the target too.

Without a vocoder, two ways lead back to audio here:

- :meth:`MelFrontEnd.stft_mask`: a ratio of two mel spectrograms (the estimate's over the
  mixture's) spread over the STFT bins through the filter bank, to mask the mixture's STFT
  and keep its phase (IRM-LDM's ``phase-preserving`` output);
- :meth:`MelFrontEnd.griffin_lim`: a magnitude from the mel spectrogram, and a phase found
  by fast Griffin-Lim (the ``vocoder`` output where no vocoder weights exist).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ...schema import config_error
from ..stft import STFT, check_mel_settings

__all__ = ["LOG_FLOOR", "MEL_FLOOR", "MelFrontEnd", "pad_frames", "peak_gain", "slaney_filterbank"]

#: AudioLDM's clamp of mel magnitudes before the log: log(1e-5) is silence.
MEL_FLOOR = 1e-5
LOG_FLOOR = math.log(MEL_FLOOR)


def slaney_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float
) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised triangular mel filters (librosa's ``filters.mel``).

    Shape:
        - output: ``(n_fft // 2 + 1, n_mels)``
    """
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=f_min,
        max_frequency=f_max,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(bank).float().clamp_min(0.0)


def check_front_end(
    sample_rate: int, n_fft: int, hop_length: int, n_mels: int, f_min: float, f_max: float
) -> None:
    """Refuse front-end settings :class:`MelFrontEnd` cannot work with, naming the setting.

    Raises:
        ConfigError: (``key`` the setting's name) A rate outside
            ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``, or what :func:`check_mel_settings` refuses
            (with the Slaney filters this front end uses).
    """
    from ...audio.io import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise config_error(
            "sample_rate", f"must be {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {sample_rate}"
        )
    with warnings.catch_warnings():  # transformers warns of empty bands: said by the check
        warnings.simplefilter("ignore")
        check_mel_settings(sample_rate, n_fft, hop_length, n_mels, f_min, f_max, slaney_filterbank)


def peak_gain(waveform: torch.Tensor, peak: float = 0.5) -> torch.Tensor:
    """The gain that scales each signal to ``peak`` (AudioLDM's loudness normalisation).

    Silent signals get a large but finite gain (their peak is floored at 1e-6).

    Shape:
        - waveform: ``(batch, time)``
        - output: ``(batch, 1)``
    """
    top = waveform.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-6)
    return peak / top


class MelFrontEnd(nn.Module):
    """Waveform <-> AudioLDM log-mel spectrogram, and mel ratios -> STFT masks.

    Args:
        sample_rate: Audio rate in Hz.
        n_fft: FFT size and window length.
        hop_length: Hop between frames in samples.
        n_mels: Mel bands.
        f_min: Lowest filter edge in Hz.
        f_max: Highest filter edge in Hz.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float = 8000.0,
    ) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.n_mels = int(n_mels)
        self.stft = STFT(n_fft, hop_length)
        bank = slaney_filterbank(sample_rate, n_fft, n_mels, f_min, f_max)  # (F, M)
        self.register_buffer("bank", bank, persistent=False)
        # Each bin's share of each band, summing to 1 over the bands that cover the bin; a
        # bin no filter covers (0 Hz, Nyquist) follows the band whose centre is nearest.
        spread = bank.clone()
        freqs = torch.linspace(0, sample_rate / 2, bank.shape[0])
        centres = (bank * freqs[:, None]).sum(0) / bank.sum(0).clamp_min(1e-12)
        empty = spread.sum(1) == 0
        nearest = (freqs[empty, None] - centres[None]).abs().argmin(dim=1)
        spread[empty.nonzero()[:, 0], nearest] = 1.0
        spread = spread / spread.sum(1, keepdim=True)
        self.register_buffer("spread", spread, persistent=False)
        self.register_buffer("band_weight", bank.sum(0).clamp_min(1e-12), persistent=False)

    @property
    def hop_length(self) -> int:
        return self.stft.hop_length

    @property
    def n_fft(self) -> int:
        return self.stft.n_fft

    @property
    def min_length(self) -> int:
        """Fewest samples the reflect-padded STFT takes: more than ``n_fft / 2``."""
        return self.stft.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """STFT frames of a signal of ``num_samples`` samples (centred frames)."""
        return self.stft.num_frames(num_samples)

    def pad_short(self, waveform: torch.Tensor) -> torch.Tensor:
        """Zero-pad signals shorter than :attr:`min_length` to that length.

        Shape:
            - waveform: ``(batch, time)``
            - output: ``(batch, max(time, min_length))``
        """
        return F.pad(waveform, (0, max(0, self.min_length - waveform.shape[-1])))

    def spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """Complex STFT, always in float32.

        Shape:
            - waveform: ``(batch, time)``, ``time > n_fft // 2``
            - output: ``(batch, frames, n_fft // 2 + 1)`` complex
        """
        return self.stft(waveform)

    def log_mel(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """``log(clamp(mel magnitude, 1e-5))`` of a complex spectrogram.

        Shape:
            - spectrogram: ``(batch, frames, bins)`` complex
            - output: ``(batch, frames, n_mels)``
        """
        magnitude = spectrogram.abs()
        return torch.log(torch.clamp(magnitude @ self.bank, min=MEL_FLOOR))

    def stft_mask(self, log_ratio: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
        """An STFT-domain mask from a mel-domain log ratio (estimate over mixture).

        The ratio of each band is spread over the bins the band's filter covers, weighted by
        the filter (bins between two bands get a weighted mean of both), and clamped to
        ``[0, max_value]``.

        Shape:
            - log_ratio: ``(batch, frames, n_mels)``
            - output: ``(batch, frames, n_fft // 2 + 1)``
        """
        ratio = torch.exp(torch.clamp(log_ratio, max=math.log(max_value)))
        return torch.clamp(ratio @ self.spread.T, 0.0, max_value)

    def phase_preserving(
        self,
        estimate_mel: torch.Tensor,
        mixture_mel: torch.Tensor,
        spectrogram: torch.Tensor,
        length: int,
        max_value: float = 1.0,
    ) -> torch.Tensor:
        """The mixture's STFT masked by :meth:`stft_mask` of the two log-mels' difference,
        back to audio (the mixture's phase is kept).

        Shape:
            - estimate_mel, mixture_mel: ``(batch, frames, n_mels)``
            - spectrogram: ``(batch, frames, n_fft // 2 + 1)`` complex (the mixture's)
            - output: ``(batch, length)``
        """
        mask = self.stft_mask(estimate_mel - mixture_mel, max_value)
        return self.stft.inverse(mask * spectrogram, length)

    def magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """A linear magnitude spectrogram that has (about) the given mel spectrogram.

        Each band's mel magnitude divided by its filter's total weight is the level of a
        flat spectrum with that mel value; the bins take the filter-weighted mean of the
        levels of the bands that cover them.

        Shape:
            - log_mel: ``(batch, frames, n_mels)``
            - output: ``(batch, frames, n_fft // 2 + 1)``
        """
        level = torch.exp(log_mel) / self.band_weight
        return level @ self.spread.T

    def griffin_lim(
        self, magnitude: torch.Tensor, length: int, num_iters: int = 32, momentum: float = 0.99
    ) -> torch.Tensor:
        """A waveform with (about) this STFT magnitude: fast Griffin-Lim.

        Perraudin, Balazs and Søndergaard, "A fast Griffin-Lim algorithm" (2013): alternate
        projections between consistent spectrograms and spectrograms of this magnitude, with
        an extrapolation of ``momentum`` between iterations. The start phase is drawn from a
        fixed seed, so the result is deterministic.

        Shape:
            - magnitude: ``(batch, frames, bins)``
            - output: ``(batch, length)``
        """
        magnitude = magnitude.float()
        generator = torch.Generator().manual_seed(0)
        phase = torch.rand(magnitude.shape, generator=generator) * (2 * math.pi)
        angles = torch.polar(torch.ones_like(phase), phase).to(magnitude.device)
        previous = torch.zeros_like(angles)
        for _ in range(num_iters):
            rebuilt = self.stft(self.stft.inverse(magnitude * angles, length))
            angles = rebuilt - previous * (momentum / (1 + momentum))
            angles = angles / angles.abs().clamp_min(1e-16)
            previous = rebuilt
        return self.stft.inverse(magnitude * angles, length)


def pad_frames(log_mel: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the frame axis with silence (``log(1e-5)``) to a multiple of ``multiple``.

    Shape:
        - log_mel: ``(batch, frames, n_mels)``
        - output: ``(batch, frames', n_mels)``, ``frames' = ceil(frames / multiple) * multiple``
    """
    extra = -log_mel.shape[1] % multiple
    return F.pad(log_mel, (0, 0, 0, extra), value=LOG_FLOOR) if extra else log_mel
