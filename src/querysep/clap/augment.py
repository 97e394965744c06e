"""Batch augmentation for training the small CLAP, in the mel-power domain.

Training precomputes each clip's mel power spectrogram once (the STFT is then off the
training step, which roughly halves its cost on a CPU) and augments there, with parameters
drawn first from a seeded ``torch.Generator``, then applied:

- speed change (tape-style: tempo and pitch together), by resampling the time axis and
  mapping each mel band to the band of ``frequency / speed``;
- random crop of ``crop_seconds`` (the model is length-agnostic; inference sees 5 s);
- random gain; mixup of two clips (powers add as ``lam^2 a + (1 - lam)^2 b``, the expected
  power of ``lam x + (1 - lam) y``), with soft class targets;
- additive white-noise floor at a random SNR;
- after the log, SpecAugment time and frequency masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

__all__ = ["AugmentConfig", "augment_mel", "spec_augment"]


@dataclass
class AugmentConfig:
    """Augmentation strengths (0 turns a transform off)."""

    crop_seconds: float = 4.0
    speed: float = 0.1  # factor drawn from [1 - speed, 1 + speed]
    gain_db: float = 6.0
    mixup_prob: float = 0.5
    mixup_alpha: float = 1.0  # mixing weight ~ Beta(alpha, alpha), folded to >= 0.5
    noise_prob: float = 0.3
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    time_masks: int = 2
    time_mask_frac: float = 0.1
    freq_masks: int = 2
    freq_mask_bands: int = 8


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _beta(n: int, alpha: float, gen: torch.Generator) -> torch.Tensor:
    """Symmetric Beta-like weights from ``gen``: exact for ``alpha == 1`` (uniform), else a
    Kumaraswamy(alpha, alpha) draw (torch's Beta sampler takes no generator)."""
    u = torch.rand(n, generator=gen)
    if alpha == 1.0:
        return u
    return (1 - (1 - u) ** (1 / alpha)) ** (1 / alpha)


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def augment_mel(
    mel: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    crop_frames: int,
    band_hz: torch.Tensor,
    band_weight: torch.Tensor,
    config: AugmentConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment mel power spectrograms of level-normalised clips; add soft class targets.

    Args:
        mel: Mel power of whole clips.
        targets: Class index of each clip.
        num_classes: Width of the soft targets.
        crop_frames: Frames to keep.
        band_hz: Centre frequency of each mel band (for the speed change).
        band_weight: Each band's gain for white noise (the filterbank column sums).
        config: Strengths.
        gen: Source of every random draw.

    Shape:
        - mel: ``(batch, n_mels, frames)``; targets: ``(batch,)``
        - output: ``(batch, n_mels, crop_frames)`` and ``(batch, num_classes)``
    """
    batch, bands, frames = mel.shape
    speeds = _uniform(batch, 1 - config.speed, 1 + config.speed, gen)
    starts = torch.rand(batch, generator=gen)
    gains = 10 ** (_uniform(batch, -config.gain_db, config.gain_db, gen) / 10)
    # time: output frame j reads source frame (u0 + j) * speed
    stretched = frames / speeds
    u0 = starts * (stretched - crop_frames).clamp(min=0)
    src_t = (u0[:, None] + torch.arange(crop_frames)[None]) * speeds[:, None]
    # frequency: output band m reads the band whose centre is band_hz[m] / speed
    mel_c = _hz_to_mel(band_hz)
    step = (mel_c[-1] - mel_c[0]) / (bands - 1)
    src_f = (_hz_to_mel(band_hz[None, :] / speeds[:, None]) - mel_c[0]) / step
    grid_x = (2 * src_t / (frames - 1) - 1).clamp(-1, 1)
    grid_y = (2 * src_f / (bands - 1) - 1).clamp(-1, 1)
    grid = torch.stack(
        [
            grid_x[:, None, :].expand(batch, bands, crop_frames),
            grid_y[:, :, None].expand(batch, bands, crop_frames),
        ],
        dim=-1,
    )
    out = F.grid_sample(mel[:, None], grid, mode="bilinear", align_corners=True)[:, 0]
    out = out * gains[:, None, None]
    soft = F.one_hot(targets, num_classes).float()
    if config.mixup_prob > 0:
        mix = torch.rand(batch, generator=gen) < config.mixup_prob
        partner = torch.randperm(batch, generator=gen)
        lam = _beta(batch, config.mixup_alpha, gen)
        lam = torch.where(mix, torch.maximum(lam, 1 - lam), torch.ones_like(lam))
        out = lam[:, None, None] ** 2 * out + (1 - lam[:, None, None]) ** 2 * out[partner]
        soft = lam[:, None] * soft + (1 - lam[:, None]) * soft[partner]
    if config.noise_prob > 0:
        noisy = torch.rand(batch, generator=gen) < config.noise_prob
        snr = _uniform(batch, *config.noise_snr_db, gen)
        level = out.mean(dim=(1, 2)) * 10 ** (-snr / 10) * noisy.float()
        shape = band_weight / band_weight.mean()
        out = out + level[:, None, None] * shape[None, :, None]
    return out, soft


def spec_augment(logmel: torch.Tensor, config: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Mask random time spans and mel bands with each item's mean value.

    Shape:
        - logmel: ``(batch, n_mels, frames)``; output: same
    """
    batch, bands, frames = logmel.shape
    keep = torch.ones_like(logmel, dtype=torch.bool)
    t_idx = torch.arange(frames)
    f_idx = torch.arange(bands)
    max_t = max(1, int(config.time_mask_frac * frames))
    for _ in range(config.time_masks):
        width = torch.randint(0, max_t + 1, (batch,), generator=gen)
        start = (torch.rand(batch, generator=gen) * (frames - width + 1)).long()
        hit = (t_idx[None] >= start[:, None]) & (t_idx[None] < (start + width)[:, None])
        keep &= ~hit[:, None, :]
    for _ in range(config.freq_masks):
        width = torch.randint(0, config.freq_mask_bands + 1, (batch,), generator=gen)
        start = (torch.rand(batch, generator=gen) * (bands - width + 1)).long()
        hit = (f_idx[None] >= start[:, None]) & (f_idx[None] < (start + width)[:, None])
        keep &= ~hit[:, :, None]
    mean = logmel.mean(dim=(1, 2), keepdim=True)
    return torch.where(keep, logmel, mean)
