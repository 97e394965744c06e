"""``test-tiny``: a reserved random-weight audio-text model for smoke tests.

Built in code, deterministic, no files: a log-mel summary (mean and spread over time of 32
bands) through one linear layer, and hashed text n-grams through another. Its scores are
NOT meaningful; it exists so tests can run ATS paths in milliseconds.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.text.hashing import HashingTextEncoder
from .base import AudioTextModel

__all__ = ["TinyClap"]


class TinyClap(AudioTextModel):
    """Random-weight audio-text model (16 kHz, 2 s windows, 32-d)."""

    kind = "test-tiny"

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.name = "test-tiny"
        self.sample_rate = 16000
        self.window_samples = 32000
        self.dim = dim
        self.n_fft = 512
        self.text = HashingTextEncoder(64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.audio_proj = nn.Linear(64, dim)
            self.text_proj = nn.Linear(64, dim)
            self.register_buffer("mel", torch.rand(self.n_fft // 2 + 1, 32), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.eval()

    def _embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            windows, self.n_fft, self.n_fft // 4, window=self.window, return_complex=True
        )
        logmel = torch.log(spec.abs().square().transpose(1, 2) @ self.mel + 1e-6)
        feats = torch.cat([logmel.mean(1), logmel.std(1)], dim=-1)
        return self.audio_proj(feats)

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        return self.text_proj(self.text.encode(texts).to(self.audio_proj.weight.device))
