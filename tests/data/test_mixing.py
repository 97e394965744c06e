from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from querysep.data import Clip, Mixer, MixParams, fit_length, make_dcase_mixture, plan_mixtures
from querysep.errors import ConfigError, DataError


def _noise(seed: int, n: int, amp: float = 0.1) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _snr(source: np.ndarray, noise: np.ndarray) -> float:
    return float(
        10
        * np.log10(np.mean(source.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    )


# ------------------------------------------------------------------------ DCASE protocol


@pytest.mark.parametrize("snr", [-15, -3, 0, 7.5, 15])
def test_dcase_mixture_has_requested_snr(snr: float) -> None:
    source, noise = _noise(0, 4000, 0.01), _noise(1, 4000, 0.2)
    mixture, target = make_dcase_mixture(source, noise, snr)
    assert mixture.dtype == np.float32 and target.shape == source.shape
    np.testing.assert_array_equal(target, source)  # no peak protection at these levels
    assert _snr(target, mixture - target) == pytest.approx(snr, abs=1e-3)


def test_dcase_mixture_peak_protection_scales_both() -> None:
    source = np.full(100, 0.8, np.float32)
    noise = np.ones(100, np.float32)
    mixture, target = make_dcase_mixture(source, noise, 0.0)  # noise scaled to 0.8
    assert np.max(np.abs(mixture)) == pytest.approx(0.9)
    np.testing.assert_allclose(target, 0.45, rtol=1e-6)
    assert _snr(target, mixture - target) == pytest.approx(0.0, abs=1e-4)


def test_dcase_mixture_reference_formula() -> None:
    source, noise = _noise(2, 1000, 0.5), _noise(3, 1000, 0.5)
    s, n = source.astype(np.float64), noise.astype(np.float64)
    n = n * np.sqrt(np.mean(s**2) / 10 ** (-10 / 10) / np.mean(n**2))
    m = s + n
    peak = np.max(np.abs(m))
    if peak > 1:
        m, s = m * 0.9 / peak, s * 0.9 / peak
    mixture, target = make_dcase_mixture(source, noise, -10)
    np.testing.assert_allclose(mixture, m, atol=1e-6)
    np.testing.assert_allclose(target, s, atol=1e-6)


def test_dcase_mixture_silent_clips_and_lengths() -> None:
    source = _noise(4, 500)
    mixture, target = make_dcase_mixture(source, np.zeros(500, np.float32), 0)
    np.testing.assert_array_equal(mixture, source)  # silent noise: zero noise, no NaN
    mixture, _ = make_dcase_mixture(np.zeros(500, np.float32), _noise(5, 500), 0)
    assert not np.any(mixture)
    # longer noise is cut, shorter noise zero-padded at the end
    noise = _noise(6, 300)
    mixture, target = make_dcase_mixture(source, noise, 5)
    assert mixture.shape == (500,)
    np.testing.assert_array_equal(mixture[300:], target[300:])
    assert _snr(target, mixture - target) == pytest.approx(5, abs=1e-3)
    assert make_dcase_mixture(source, _noise(7, 900), 5)[0].shape == (500,)


def test_dcase_mixture_batch_is_per_row() -> None:
    sources = np.stack([_noise(8, 400), _noise(9, 400, 0.9)])
    noises = np.stack([_noise(10, 400), _noise(11, 400)])
    mixtures, targets = make_dcase_mixture(sources, noises, np.array([3.0, -6.0]))
    for k, snr in enumerate([3.0, -6.0]):
        m, t = make_dcase_mixture(sources[k], noises[k], snr)
        np.testing.assert_allclose(mixtures[k], m, atol=1e-7)
        np.testing.assert_allclose(targets[k], t, atol=1e-7)


def test_fit_length() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert fit_length(x, 2).tolist() == [[0, 1], [3, 4]]
    assert fit_length(x, 4).tolist() == [[0, 1, 2, 0], [3, 4, 5, 0]]


# -------------------------------------------------------------------------- planning


def test_plan_mixtures_valid_and_deterministic(labelled_clips: list[Clip]) -> None:
    rows = plan_mixtures(labelled_clips, 50, snr_min=-5, snr_max=5, seed=3)
    assert rows == plan_mixtures(labelled_clips, 50, snr_min=-5, snr_max=5, seed=3)
    assert rows != plan_mixtures(labelled_clips, 50, snr_min=-5, snr_max=5, seed=4)
    by_id = {c.id: c for c in labelled_clips}
    for row in rows:
        assert row.kind == "dcase" and row.snr is not None
        assert -5 <= row.snr <= 5 and float(row.snr).is_integer()
        source, noise = by_id[str(row.source)], by_id[str(row.noise)]
        assert set(source.labels).isdisjoint(noise.labels)
        assert row.caption == source.captions[0]
    # sources are used evenly: 50 rows over 12 sources -> 4 or 5 each
    counts = np.unique([row.source for row in rows], return_counts=True)[1]
    assert len(counts) == 12 and set(counts) <= {4, 5}
    # no repeated (source, noise) pair while partners remain (9 per source)
    assert len({(r.source, r.noise) for r in rows}) == 50
    assert {r.snr for r in plan_mixtures(labelled_clips, 200, snr_min=-2, snr_max=2)} == {
        -2,
        -1,
        0,
        1,
        2,
    }


def test_plan_mixtures_random_caption(labelled_clips: list[Clip]) -> None:
    rows = plan_mixtures(labelled_clips, 60, caption="random", seed=1)
    by_id = {c.id: c for c in labelled_clips}
    assert all(row.caption in by_id[str(row.source)].captions for row in rows)
    assert any(row.caption != by_id[str(row.source)].captions[0] for row in rows)


def test_plan_mixtures_unlabelled_and_label_fallback() -> None:
    clips = [Clip(id="a", audio="/a.wav", captions=["x"]), Clip(id="b", audio="/b.wav")]
    rows = plan_mixtures(clips, 4)
    assert {(r.source, r.noise) for r in rows} == {("a", "b")}  # b has no text: noise only
    labelled = [Clip(id="c", audio="/c.wav", labels=["Dog_bark"]), *clips]
    assert {r.caption for r in plan_mixtures(labelled, 9)} == {"x", "Dog bark"}


def test_one_file_spelled_two_ways_is_never_its_own_noise(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "dog.wav").write_bytes(b"")
    (tmp_path / "link.wav").symlink_to(tmp_path / "d" / "dog.wav")
    spellings = [f"{tmp_path}//d/./dog.wav", str(tmp_path / "link.wav")]
    clips = [Clip(id="a", audio=str(tmp_path / "d" / "dog.wav"), captions=["x"])]
    clips += [Clip(id=f"s{k}", audio=s, captions=["y"]) for k, s in enumerate(spellings)]
    clips.append(Clip(id="rain", audio=str(tmp_path / "rain.wav"), captions=["rain"]))
    rows = plan_mixtures(clips, 40)
    dogs = {"a", "s0", "s1"}
    # was: rows such as (a, s0): a clip mixed with itself, refused only by evaluate
    assert all(not {r.source, r.noise} <= dogs for r in rows)
    assert {r.source for r in rows} == dogs | {"rain"}
    with pytest.raises(DataError, match="shares a label or its audio file"):
        plan_mixtures(clips[:3], 1)


def test_a_clip_known_to_be_too_short_is_noise_only() -> None:
    clips = [
        Clip(id="tiny", audio="/tiny.wav", captions=["a click"], duration=0.01),
        Clip(id="long", audio="/long.wav", captions=["rain"], duration=5.0),
        Clip(id="unprobed", audio="/u.wav", captions=["wind"]),  # duration 0.0: not known
    ]
    rows = plan_mixtures(clips, 12)
    assert {r.source for r in rows} == {"long", "unprobed"}  # was: tiny too, unscoreable
    assert "tiny" in {r.noise for r in rows}
    with pytest.raises(DataError, match="too short to score"):
        plan_mixtures([clips[0], Clip(id="b", audio="/b.wav", duration=0.05)], 1)


def test_plan_mixtures_errors() -> None:
    same = [Clip(id=f"c{k}", audio=f"/{k}.wav", captions=["dog"], labels=["dog"]) for k in range(3)]
    with pytest.raises(DataError, match="no valid"):
        plan_mixtures(same, 5)
    with pytest.raises(DataError, match="no valid"):
        plan_mixtures([Clip(id="x", audio="/x.wav", captions=["x"])], 1)
    with pytest.raises(DataError, match="caption or label"):
        plan_mixtures([Clip(id="x", audio="/x.wav"), Clip(id="y", audio="/y.wav")], 1)
    with pytest.raises(ConfigError):
        plan_mixtures(same, 0)
    with pytest.raises(ConfigError):
        plan_mixtures(same, 1, snr_min=5, snr_max=-5)


# ------------------------------------------------------------------- training mixer

signals = st.integers(0, 400).flatmap(
    lambda n: st.tuples(
        arrays(np.float32, n, elements=st.floats(-4, 4, width=32)),
        arrays(np.float32, st.integers(0, 500), elements=st.floats(-4, 4, width=32)),
    )
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    pair=signals,
    scale=st.sampled_from([1.0, 1e-6, 1e-30, 0.0]),
    seed=st.integers(0, 2**32 - 1),
    max_offset=st.sampled_from([0.0, 0.5]),
)
def test_mixer_invariants(
    pair: tuple[np.ndarray, np.ndarray], scale: float, seed: int, max_offset: float
) -> None:
    target, interferer = pair
    target = target * np.float32(scale)
    mixer = Mixer(max_offset=max_offset)
    params = mixer.sample_params(seed)
    assert params == mixer.sample_params(np.random.Generator(np.random.PCG64(seed)))
    assert -10 <= params.gain_db <= 10 and 0 <= params.offset <= max_offset
    mixture, target_out, interference = mixer.mix(target, interferer, params)
    for out in (mixture, target_out, interference):
        assert out.shape == target.shape and out.dtype == np.float32
        assert np.all(np.isfinite(out))
    np.testing.assert_allclose(mixture, target_out + interference, atol=1e-6)
    peak = np.max(np.abs(mixture), initial=0.0)
    assert peak <= 1.0 + 1e-6
    if not np.array_equal(target_out, target):  # protection scaled the mix to peak 0.9
        assert peak == pytest.approx(0.9, abs=1e-5)
        normal = np.abs(target) > 1e-30  # subnormals lose precision when scaled
        ratio = target_out[normal] / target[normal]
        np.testing.assert_allclose(ratio, np.full_like(ratio, ratio[0]), rtol=1e-5)
    again = mixer.apply(target, interferer, mixer.sample_params(seed))
    np.testing.assert_array_equal(again[0], mixture)
    np.testing.assert_array_equal(again[1], target_out)


def test_mixer_peak_always_bounded_after_protection() -> None:
    mixer = Mixer()
    loud = np.full(100, 3.0, np.float32)
    mixture, target = mixer.apply(loud, _noise(0, 100), MixParams(gain_db=5.0))
    assert np.max(np.abs(mixture)) == pytest.approx(0.9, abs=1e-6)
    assert np.max(np.abs(target)) < 0.9


def test_mixer_gain_is_relative_level() -> None:
    mixer = Mixer()
    target, interferer = _noise(1, 8000, 0.05), _noise(2, 8000, 0.2)
    for gain in (-10.0, 0.0, 7.0):
        _, target_out, interference = mixer.mix(target, interferer, MixParams(gain_db=gain))
        assert _snr(target_out, interference) == pytest.approx(-gain, abs=1e-3)


def test_mixer_offset_delays_interferer() -> None:
    mixer = Mixer(max_offset=0.9)
    target, interferer = _noise(3, 100), _noise(4, 100)
    _, _, interference = mixer.mix(target, interferer, MixParams(offset=0.25))
    assert not np.any(interference[:25]) and np.all(interference[25:] != 0)


def test_mixer_draws_from_range_and_validates() -> None:
    mixer = Mixer((-3.0, 2.0))
    rng = np.random.Generator(np.random.PCG64(0))
    gains = [mixer.sample_params(rng).gain_db for _ in range(200)]
    assert -3 <= min(gains) < -2.5 and 1.5 < max(gains) <= 2
    with pytest.raises(ConfigError):
        Mixer((5.0, -5.0))
    with pytest.raises(ConfigError):
        Mixer(max_offset=1.0)


@pytest.mark.parametrize("bad", [(-15.0, 800.0), (-math.inf, 0.0), (math.nan, 0.0), (5.0, -5.0)])
def test_mixer_refuses_gains_beyond_100_db(bad: tuple[float, float]) -> None:
    with pytest.raises(ConfigError, match=r"gain_db_range must lie within -100..100 dB"):
        Mixer(bad)
