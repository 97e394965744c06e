"""The shared audio handling of every audio-text model (resampling, level, windows, batches)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from querysep.audio.io import resample
from querysep.clap import REFERENCE_RMS, load_clap
from querysep.clap.base import repeat_pad, window_starts
from querysep.errors import AudioError, ConfigError, ModelNotFoundError, QueryError


@pytest.fixture(scope="module")
def model():
    return load_clap("test-tiny")


def _noise(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32)


def test_embeddings_are_unit_length_and_the_score_is_their_cosine(model) -> None:
    audio = np.stack([_noise(1.0, seed=1), _noise(1.0, seed=2)])
    a = model.embed_audio(audio, 16000)
    t = model.embed_text(["a dog barking", "rain on a roof", "a siren"])
    assert a.shape == (2, model.dim) and t.shape == (3, model.dim)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(model.score(audio, 16000, ["a siren"])[:, 0], a @ t[2])


def test_ats_does_not_change_with_gain(model) -> None:
    x = _noise(3.0)
    base = model.score(x, 16000, ["a dog"])
    for gain in (1e-3, 0.5, 8.0):
        torch.testing.assert_close(model.score(x * gain, 16000, ["a dog"]), base, atol=1e-5, rtol=0)
    # without level normalisation the raw model sees the gain (its features are log-mel)
    raw = model.embed_audio(x, 16000, normalize_level=False)
    loud = model.embed_audio(x * 8.0, 16000, normalize_level=False)
    assert not torch.allclose(raw, loud, atol=1e-3)


def test_silence_stays_silence_and_scores(model) -> None:
    windows, _ = model.prepare_windows(np.zeros(16000, np.float32), 16000)
    assert not windows.any()
    assert torch.isfinite(model.score(np.zeros(16000, np.float32), 16000, ["quiet"])).all()


def test_batched_equals_one_by_one_for_any_lengths(model) -> None:
    clips = [_noise(0.3, seed=1), _noise(2.0, seed=2), _noise(5.5, seed=3), _noise(9.0, seed=4)]
    together = model.embed_audio(clips, 16000, batch_size=3)
    alone = torch.cat([model.embed_audio(c, 16000) for c in clips])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)
    texts = ["a dog", "rain", "a car horn honking twice"]
    torch.testing.assert_close(
        model.embed_text(texts, batch_size=2),
        torch.cat([model.embed_text([t]) for t in texts]),
    )


def test_audio_is_resampled_to_the_models_rate_never_reinterpreted(model) -> None:
    x16 = _noise(4.0)
    x48 = resample(x16, 16000, 48000)
    e16 = model.embed_audio(x16, 16000)
    e48 = model.embed_audio(x48, 48000)
    assert float((e16 * e48).sum()) > 0.999
    # feeding the 48 kHz samples as if they were 16 kHz (3x slower) changes the embedding
    wrong = model.embed_audio(x48, 16000)
    assert float((e16 * wrong).sum()) < float((e16 * e48).sum())


def test_channels_are_averaged(model) -> None:
    left, right = _noise(1.0, seed=1), _noise(1.0, seed=2)
    stereo = np.stack([left, right])[None]  # (1, 2, time)
    mono = ((left + right) / 2)[None]
    torch.testing.assert_close(model.embed_audio(stereo, 16000), model.embed_audio(mono, 16000))


def test_level_is_normalised_to_the_reference_rms(model) -> None:
    windows, owners = model.prepare_windows(_noise(2.0) * 3, 16000)
    assert owners == [0]
    assert np.sqrt(np.mean(windows.astype(np.float64) ** 2)) == pytest.approx(REFERENCE_RMS, 1e-4)


def test_repeat_pad_and_windows() -> None:
    np.testing.assert_array_equal(
        repeat_pad(np.array([1.0, 2.0, 3.0]), 8), [1, 2, 3, 1, 2, 3, 0, 0]
    )
    np.testing.assert_array_equal(repeat_pad(np.array([1.0, 2.0]), 2), [1, 2])
    assert window_starts(5, 10) == [0]
    assert window_starts(10, 10) == [0]
    assert window_starts(25, 10) == [0, 8, 15]  # 3 windows, the last one ends at the end
    for n in (11, 99, 1000):
        starts = window_starts(n, 10)
        assert starts[0] == 0 and starts[-1] == n - 10
        assert all(b - a <= 10 for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize(
    ("audio", "rate", "match"),
    [
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.array([0.0, np.nan] * 800, np.float32), 16000, "NaN"),
        (np.zeros(1600, np.float32), 100, "sample rate"),
        (np.zeros(1600, np.float32), 10**7, "sample rate"),
        (np.zeros((1, 1, 1, 10), np.float32), 16000, "shaped"),
        ([], 16000, "no audio"),
    ],
)
def test_bad_audio_is_a_one_line_error(model, audio, rate, match) -> None:
    with pytest.raises(AudioError, match=match):
        model.embed_audio(audio, rate)


def test_a_whole_float_rate_is_that_rate(model) -> None:
    x = _noise(1.0, 22050)
    expected = model.embed_audio(x, 22050)
    for rate in (22050.0, np.float32(22050), np.int64(22050)):
        torch.testing.assert_close(model.embed_audio(x, rate), expected)


@pytest.mark.parametrize(
    ("rate", "match"),
    [
        (16000.5, "whole number of Hz, got 16000.5"),
        (float("nan"), "whole number of Hz"),
        (True, "number of Hz, got True"),
        ("16000", "number of Hz, got '16000'"),
        (100.0, "100.0 Hz is outside 8000-384000 Hz"),
    ],
)
def test_a_rate_that_is_no_whole_number_in_range_says_so(model, rate, match) -> None:
    with pytest.raises(AudioError, match=match):
        model.embed_audio(_noise(0.5), rate)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, 2.0, True, None])
def test_a_batch_size_that_is_no_whole_number_from_1_is_a_config_error(model, batch_size) -> None:
    with pytest.raises(
        ConfigError, match=f"batch_size must be a whole number >= 1, got {batch_size}"
    ):
        model.embed_text(["a dog", "rain"], batch_size=batch_size)
    with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1"):
        model.embed_audio(_noise(0.5), 16000, batch_size=batch_size)
    with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1"):
        model.embed_windows(np.zeros((2, model.window_samples), np.float32), batch_size=batch_size)
    assert model.embed_text(["a dog", "rain"], batch_size=np.int64(1)).shape == (2, model.dim)


@pytest.mark.parametrize("texts", [[], [""], ["   "], ["x" * 5000]])
def test_bad_text_is_a_query_error(model, texts) -> None:
    with pytest.raises(QueryError):
        model.embed_text(texts)


@pytest.mark.parametrize("spec", ["", "  ", "no-such-model", "/no/such/folder", "nokind:thing"])
def test_unknown_models_are_named(spec: str) -> None:
    with pytest.raises(ModelNotFoundError):
        load_clap(spec)


def test_a_file_or_a_folder_that_is_no_model_is_refused(tmp_path) -> None:
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="laion:"):
        load_clap(str(tmp_path / "weights.pt"))
    with pytest.raises(ModelNotFoundError, match="not an audio-text model folder"):
        load_clap(str(tmp_path))
