"""Files are embedded as their whole signal would be, streamed, and pairs scored once each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from querysep.audio.io import load_audio
from querysep.clap import load_clap
from querysep.clap.files import embed_file, embed_files, file_windows, score_pairs
from querysep.errors import AudioError, ConfigError


@pytest.fixture(scope="module")
def model():
    return load_clap("test-tiny")


def _write(path: Path, seconds: float, rate: int, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, 0.1 * rng.standard_normal((int(seconds * rate), channels)), rate, "FLOAT")
    return path


@pytest.fixture(params=["read-at-once", "streamed"])
def streaming(request, monkeypatch):
    if request.param == "streamed":
        monkeypatch.setattr("querysep.clap.files._IN_MEMORY_SAMPLES", 0)
    return request.param


@pytest.mark.parametrize(
    ("seconds", "rate", "channels"),
    [(0.2, 16000, 1), (2.0, 16000, 2), (4.37, 44100, 1), (95.0, 16000, 1)],
)
def test_streamed_file_windows_equal_the_in_memory_ones(
    model, tmp_path, seconds, rate, channels, streaming
):
    path = _write(tmp_path / "a.wav", seconds, rate, channels)
    audio, _ = load_audio(path, model.sample_rate, mono=True)
    expected, _ = model.prepare_windows(audio[0], model.sample_rate)
    got = file_windows(model, path)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)
    torch.testing.assert_close(
        embed_file(model, path),
        model.embed_audio(audio[0], model.sample_rate)[0],
        atol=1e-5,
        rtol=0,
    )


def test_many_files_batched_across_files_equal_one_by_one(model, tmp_path):
    paths = [_write(tmp_path / f"{i}.wav", s, 16000, seed=i) for i, s in enumerate([0.5, 3, 7, 1])]
    seen = []
    together = embed_files(model, paths, batch_size=3, on_file=seen.append)
    alone = torch.stack([embed_file(model, p) for p in paths])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)
    assert seen == [0, 1, 2, 3]


@pytest.mark.parametrize("batch_size", [0, -2, 2.5])
def test_a_batch_size_below_1_or_fractional_is_refused(model, tmp_path, batch_size):
    path = _write(tmp_path / "a.wav", 0.5, 16000)
    with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1"):
        embed_files(model, [path], batch_size=batch_size)


def test_pairs_embed_each_file_and_text_once(model, tmp_path, monkeypatch):
    a = _write(tmp_path / "a.wav", 1.0, 16000, seed=1)
    b = _write(tmp_path / "b.wav", 1.0, 16000, seed=2)
    calls = {"windows": 0, "texts": []}
    original_windows, original_texts = model._embed_windows, model._embed_texts

    def count_windows(windows):
        calls["windows"] += windows.shape[0]
        return original_windows(windows)

    def count_texts(texts):
        calls["texts"] += texts
        return original_texts(texts)

    monkeypatch.setattr(model, "_embed_windows", count_windows)
    monkeypatch.setattr(model, "_embed_texts", count_texts)
    audio = [a, b, a, b, a]
    texts = ["dog", "dog", "rain", "rain", "dog"]
    scores = score_pairs(model, audio, texts)
    assert calls["windows"] == 2 and sorted(calls["texts"]) == ["dog", "rain"]
    monkeypatch.undo()
    for path, text, score in zip(audio, texts, scores, strict=True):
        expected = float(embed_file(model, path) @ model.embed_text([text])[0])
        assert score == pytest.approx(expected, abs=1e-5)


def test_an_unreadable_file_fails_or_is_reported(model, tmp_path):
    good = _write(tmp_path / "good.wav", 1.0, 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(AudioError):
        score_pairs(model, [good, bad], ["a", "b"])
    errors = []
    scores = score_pairs(model, [good, bad], ["a", "b"], on_error=lambda p, e: errors.append(p))
    assert errors == [bad] and np.isfinite(scores[0]) and np.isnan(scores[1])
