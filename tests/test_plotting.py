"""The spectrogram figure of ``separate --plot``: what it computes, block by block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from querysep.plotting import _log_spectrogram, plot_files, plot_separation


def test_the_spectrogram_in_blocks_is_the_spectrogram_at_once() -> None:
    x = np.random.default_rng(0).standard_normal(3 * 2**20 // 4).astype(np.float32)
    n_fft, hop = 8192, 2048  # more frames than one block holds (512 of 8192)
    got = _log_spectrogram(x, n_fft, hop)
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n_fft)[::hop]
    whole = 20 * np.log10(np.maximum(np.abs(np.fft.rfft(frames * np.hanning(n_fft))), 1e-5)).T
    assert got.shape == whole.shape and got.dtype == np.float32
    assert np.abs(got - whole).max() < 1e-2  # dB: float32 against float64


def test_a_multichannel_file_is_drawn_as_its_downmix(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    stereo = (0.1 * rng.standard_normal((16000, 2))).astype(np.float32)
    sf.write(tmp_path / "mix.wav", stereo, 16000, subtype="FLOAT")
    sf.write(tmp_path / "est.wav", 0.5 * stereo, 16000, subtype="FLOAT")
    from_files = plot_files(tmp_path / "mix.wav", tmp_path / "est.wav", tmp_path / "a.png")
    direct = plot_separation(stereo.T, 0.5 * stereo.T, 16000, tmp_path / "b.png")
    assert from_files.read_bytes() == direct.read_bytes()  # the same figure, read downmixed
