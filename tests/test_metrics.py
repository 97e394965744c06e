"""Tests for querysep.metrics against plain re-implementations of the DCASE 2024 formulas."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

from querysep.errors import AudioError, ConfigError
from querysep.metrics import SDR_FLOOR, get_metrics, sdr, sdri, si_sdr

# --------------------------------------------------------------------------- references


def reference_sdr(s: np.ndarray, e: np.ndarray) -> float:
    """The challenge formula, written out with loops in float64."""
    s = [float(x) for x in s]
    e = [float(x) for x in e]
    signal = sum(x * x for x in s) / len(s)
    error = sum((y - x) ** 2 for x, y in zip(s, e, strict=True)) / len(s)
    return 10.0 * math.log10(max(signal, 1e-10) / max(error, 1e-10))


def reference_si_sdr(s: np.ndarray, e: np.ndarray, eps: float) -> float:
    s64 = np.asarray(s, dtype=np.float64)
    e64 = np.asarray(e, dtype=np.float64)
    alpha = (eps + np.dot(s64, e64)) / (np.dot(s64, s64) + eps)
    target = alpha * s64
    residual = e64 - target
    return 10.0 * math.log10((eps + np.dot(target, target)) / (eps + np.dot(residual, residual)))


def signals(seed: int, length: int = 1000, noise: float = 0.3, shape: tuple[int, ...] = ()):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((*shape, length))
    e = s + noise * rng.standard_normal((*shape, length))
    m = s + rng.standard_normal((*shape, length))
    return s, e, m


# --------------------------------------------------------------------------- formulas


@pytest.mark.parametrize("seed", range(5))
def test_matches_reference_float64(seed: int) -> None:
    s, e, m = signals(seed, noise=0.1 * (seed + 1))
    eps = np.finfo(np.float64).eps
    assert sdr(s, e) == pytest.approx(reference_sdr(s, e), abs=1e-9)
    assert si_sdr(s, e) == pytest.approx(reference_si_sdr(s, e, eps), abs=1e-9)
    assert sdri(s, e, m) == pytest.approx(reference_sdr(s, e) - reference_sdr(s, m), abs=1e-9)


def test_float32_uses_float32_epsilon() -> None:
    s, e, _ = signals(0)
    s32, e32 = s.astype(np.float32), e.astype(np.float32)
    expected = reference_si_sdr(s32, e32, float(np.finfo(np.float32).eps))
    assert si_sdr(s32, e32) == pytest.approx(expected, abs=1e-9)
    # Silent reference, faint estimate: the epsilon decides the value, so its dtype shows.
    faint = np.full(4, 1e-5, dtype=np.float32)
    silent = np.zeros(4, dtype=np.float32)
    eps32 = float(np.finfo(np.float32).eps)
    eps64 = float(np.finfo(np.float64).eps)
    assert si_sdr(silent, faint) == pytest.approx(reference_si_sdr(silent, faint, eps32), abs=1e-9)
    assert si_sdr(silent, faint) > -1.0
    assert si_sdr(silent.astype(np.float64), faint.astype(np.float64)) == pytest.approx(
        reference_si_sdr(silent, faint, eps64), abs=1e-9
    )
    assert si_sdr(silent.astype(np.float64), faint.astype(np.float64)) < -60.0


def test_single_signals_give_python_floats() -> None:
    s, e, m = signals(1)
    for value in (sdr(s, e), si_sdr(s, e), sdri(s, e, m)):
        assert type(value) is float


# --------------------------------------------------------------------------- known values


def test_perfect_estimate() -> None:
    s, _, _ = signals(2)
    assert si_sdr(s, s) > 150.0
    # The error power is floored at 1e-10, so SDR is capped by the signal power.
    assert sdr(s, s) == pytest.approx(10 * np.log10(np.mean(s**2) / SDR_FLOOR), abs=1e-9)


@pytest.mark.parametrize("ratio_db", [-10.0, 0.0, 12.5, 30.0])
def test_sdr_equals_the_power_ratio(ratio_db: float) -> None:
    rng = np.random.default_rng(3)
    s = rng.standard_normal(4000)
    n = rng.standard_normal(4000)
    n *= np.sqrt(np.mean(s**2) / np.mean(n**2) / 10 ** (ratio_db / 10))
    assert sdr(s, s + n) == pytest.approx(ratio_db, abs=1e-9)


def test_scaling_changes_sdr_but_not_si_sdr() -> None:
    s, e, _ = signals(4)
    for scale in (0.1, 0.5, 3.0, 20.0):
        assert si_sdr(s, scale * e) == pytest.approx(si_sdr(s, e), abs=1e-9)
        assert abs(sdr(s, scale * e) - sdr(s, e)) > 0.5


def test_floor_for_silent_reference_and_silent_error() -> None:
    silent = np.zeros(100)
    noise = np.full(100, 1e-3)  # mean power 1e-6
    assert sdr(silent, noise) == pytest.approx(10 * np.log10(1e-10 / 1e-6), abs=1e-9)
    assert sdr(silent, silent) == 0.0  # both powers floored: 1e-10 / 1e-10
    tiny = np.full(100, 1e-6)  # mean power 1e-12, below the floor
    assert sdr(tiny, silent) == 0.0
    assert si_sdr(silent, silent) == 0.0


# --------------------------------------------------------------------------- batches, torch


def test_batch_equals_per_item_loop() -> None:
    s, e, m = signals(5, length=500, shape=(3, 2))
    for metric, args in ((sdr, (s, e)), (si_sdr, (s, e)), (sdri, (s, e, m))):
        batch = metric(*args)
        assert isinstance(batch, np.ndarray)
        assert batch.shape == (3, 2)
        assert batch.dtype == np.float64
        for i in range(3):
            for j in range(2):
                assert batch[i, j] == pytest.approx(metric(*(a[i, j] for a in args)), abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_matches_numpy(dtype: torch.dtype) -> None:
    s, e, m = signals(6, length=800, shape=(4,))
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    s, e, m = (x.astype(np_dtype) for x in (s, e, m))
    ts, te, tm = (torch.from_numpy(x) for x in (s, e, m))
    for metric, args, targs in (
        (sdr, (s, e), (ts, te)),
        (si_sdr, (s, e), (ts, te)),
        (sdri, (s, e, m), (ts, te, tm)),
    ):
        out = metric(*targs)
        assert isinstance(out, torch.Tensor)
        assert out.dtype == torch.float64
        assert out.shape == (4,)
        np.testing.assert_allclose(out.numpy(), metric(*args), rtol=0, atol=1e-10)
    single = si_sdr(ts[0], te[0])
    assert isinstance(single, torch.Tensor) and single.ndim == 0


def test_torch_gradient_flows() -> None:
    s, e, _ = signals(7, length=300)
    estimate = torch.tensor(e, dtype=torch.float64, requires_grad=True)
    (-si_sdr(torch.tensor(s), estimate)).backward()
    assert estimate.grad is not None and torch.isfinite(estimate.grad).all()
    # the gradient is the derivative of the value (checked against finite differences)
    reference = torch.tensor(s, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: si_sdr(reference, x), (estimate,))


def test_si_sdr_matches_torchmetrics() -> None:
    s, e, _ = signals(8, length=2000, noise=0.7, shape=(5,))
    ours = si_sdr(torch.from_numpy(s), torch.from_numpy(e))
    theirs = scale_invariant_signal_distortion_ratio(
        torch.from_numpy(e), torch.from_numpy(s), zero_mean=False
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-3)


def test_shape_mismatch_and_empty_signals_are_audio_errors() -> None:
    with pytest.raises(AudioError, match=r"same shape.*\(100,\), \(99,\)"):
        sdr(np.zeros(100), np.zeros(99))
    with pytest.raises(AudioError, match="same shape"):
        si_sdr(torch.zeros(2, 10), torch.zeros(10))
    with pytest.raises(AudioError, match="same shape"):
        get_metrics(np.zeros(10), np.zeros(10), np.zeros(11))
    with pytest.raises(AudioError, match="non-empty"):
        sdr(np.zeros(0), np.zeros(0))
    with pytest.raises(AudioError, match="non-empty"):
        sdri(np.float32(1), np.float32(1), np.float32(1))  # no time axis at all


@pytest.mark.parametrize(
    ("bad", "got"),
    [
        (None, "got None"),
        ([None] * 10, "got list holding objects"),  # was a silent NaN score
        (["a"] * 10, "got list holding text"),  # was numpy's ValueError
        ([[0.0] * 10, [0.0] * 9], "got list that is not a rectangular array"),
        (np.ones(10) * 1j, "got ndarray holding complex numbers"),  # was a ComplexWarning
        (
            torch.ones(10, dtype=torch.complex64),
            r"got Tensor .* complex numbers \(torch\.complex64\)",
        ),
    ],
)
def test_signals_that_are_not_real_numbers_are_audio_errors(bad: object, got: str) -> None:
    """Not a bare TypeError or ValueError, nor a score made of the real part or of NaN; the
    same for the reference, the estimate or the mixture, numpy or torch beside it."""
    good = np.ones(10)
    match = r"signals must be arrays or tensors of real numbers, " + got + "$"
    calls = [
        lambda: sdr(bad, good),
        lambda: si_sdr(good, bad),
        lambda: sdri(good, good, bad),
        lambda: get_metrics(bad, good, good),
        lambda: sdr(torch.from_numpy(good), bad),
    ]
    for call in calls:
        with pytest.raises(AudioError, match=match):
            call()


def test_numpy_views_torch_cannot_share_mix_with_torch_silently() -> None:
    s, e, m = signals(11)
    read_only = s.copy()
    read_only.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "NumPy array is not writable" warning
        scores = [
            sdr(read_only, torch.from_numpy(e)),
            sdr(s[::-1], torch.from_numpy(e[::-1].copy())),  # negative strides
            si_sdr(torch.from_numpy(s.copy()), e[::-1][::-1]),
            sdri(read_only[::-1], torch.from_numpy(e[::-1].copy()), m[::-1]),
        ]
    assert all(isinstance(x, torch.Tensor) for x in scores)
    assert float(scores[0]) == pytest.approx(sdr(s, e), abs=1e-12)
    assert float(scores[1]) == pytest.approx(sdr(s, e), abs=1e-12)
    assert float(scores[2]) == pytest.approx(si_sdr(s, e), abs=1e-12)
    assert float(scores[3]) == pytest.approx(sdri(s, e, m), abs=1e-12)


# --------------------------------------------------------------------------- get_metrics


def test_get_metrics_is_one_flat_dict() -> None:
    s, e, m = signals(9)
    scores = get_metrics(m, s, e)
    assert list(scores) == ["sdr", "sdri", "si_sdr", "si_sdri", "input_sdr", "input_si_sdr"]
    assert all(type(v) is float for v in scores.values())
    assert scores["sdr"] == pytest.approx(sdr(s, e), abs=1e-12)
    assert scores["si_sdr"] == pytest.approx(si_sdr(s, e), abs=1e-12)
    assert scores["input_sdr"] == pytest.approx(sdr(s, m), abs=1e-12)
    assert scores["input_si_sdr"] == pytest.approx(si_sdr(s, m), abs=1e-12)
    assert scores["sdri"] == pytest.approx(sdri(s, e, m), abs=1e-12)
    assert scores["si_sdri"] == pytest.approx(scores["si_sdr"] - scores["input_si_sdr"])
    assert scores["sdri"] > 0  # the estimate is closer to the reference than the mixture


def test_get_metrics_batches_and_torch() -> None:
    s, e, m = signals(10, length=400, shape=(3,))
    batch = get_metrics(m, s, e)
    assert all(isinstance(v, np.ndarray) and v.shape == (3,) for v in batch.values())
    single = get_metrics(torch.from_numpy(m[1]), torch.from_numpy(s[1]), torch.from_numpy(e[1]))
    assert all(type(v) is float for v in single.values())
    for name, value in single.items():
        assert value == pytest.approx(batch[name][1], abs=1e-12)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), gain=st.floats(-10.0, 10.0).filter(lambda a: a != 1.0))
def test_sdr_of_scaled_reference_is_the_gain_error(seed: int, gain: float) -> None:
    # Estimate a*s has error (a-1)*s, so SDR = -20 log10|a - 1| while the floor stays away.
    s = np.random.default_rng(seed).standard_normal(256)
    error_power = (gain - 1.0) ** 2 * np.mean(s**2)
    expected = 10 * np.log10(max(np.mean(s**2), 1e-10) / max(error_power, 1e-10))
    assert sdr(s, gain * s) == pytest.approx(expected, abs=1e-6)
    if error_power > 1e-10:
        assert sdr(s, gain * s) == pytest.approx(-20 * np.log10(abs(gain - 1.0)), abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-2, 1e2) | st.floats(-1e2, -1e-2),
    noise=st.floats(0.01, 3.0),
)
def test_si_sdr_ignores_the_estimate_scale_and_sign(seed: int, scale: float, noise: float) -> None:
    s, e, _ = signals(seed, length=256, noise=noise)
    assert si_sdr(s, scale * e) == pytest.approx(si_sdr(s, e), abs=1e-6)
    assert si_sdr(s, e) == pytest.approx(
        reference_si_sdr(s, e, float(np.finfo(np.float64).eps)), abs=1e-9
    )


def test_get_metrics_takes_the_epsilon_of_the_reference_not_of_the_mixture() -> None:
    # DCASE's evaluator: eps = np.finfo(reference.dtype).eps, whatever the mixture's dtype
    faint = np.full(4, 1e-5, dtype=np.float32)
    silent = np.zeros(4, dtype=np.float32)
    eps32 = float(np.finfo(np.float32).eps)
    scores = get_metrics((silent + faint).astype(np.float64), silent, faint)
    assert scores["si_sdr"] == pytest.approx(reference_si_sdr(silent, faint, eps32), abs=1e-9)
    assert scores["si_sdr"] == pytest.approx(si_sdr(silent, faint), abs=1e-9)


def test_silence_has_no_ats() -> None:
    from querysep.clap import load_clap

    clap = load_clap("test-tiny")
    mix = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    silent = np.zeros_like(mix)
    one = get_metrics(mix, mix, silent, query="a dog", clap=clap, sample_rate=16000)
    assert math.isnan(one["ats"]) and math.isfinite(one["input_ats"])
    batch = get_metrics(
        np.stack([mix, mix]),
        np.stack([mix, mix]),
        np.stack([silent, mix]),
        query="a dog",
        clap=clap,
        sample_rate=16000,
    )
    assert math.isnan(batch["ats"][0]) and batch["ats"][1] == pytest.approx(one["input_ats"])


@pytest.fixture(scope="module")
def clap():
    from querysep.clap import load_clap

    return load_clap("test-tiny")


def test_ats_is_per_signal_like_every_other_score(clap) -> None:
    # (batch, channels, time): one ATS per channel, shaped like SDR; 4-D input works too
    rng = np.random.default_rng(12)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    mix = np.stack(
        [np.stack([tone, rng.standard_normal(16000)]), np.stack([0.5 * tone, np.zeros(16000)])]
    ).astype(np.float32)
    mix[1, 1] = 0.1 * rng.standard_normal(16000)
    est = mix * np.float32(0.5)
    est[1, 1] = 0.0  # a silent channel: no ATS
    batch = get_metrics(mix, mix, est, query="a tone", clap=clap, sample_rate=16000)
    assert all(np.shape(v) == (2, 2) for v in batch.values())
    for b in range(2):
        for c in range(2):
            one = get_metrics(
                mix[b, c], mix[b, c], est[b, c], query="a tone", clap=clap, sample_rate=16000
            )
            for name in ("ats", "input_ats"):
                if math.isnan(one[name]):
                    assert math.isnan(batch[name][b, c])
                else:
                    assert batch[name][b, c] == pytest.approx(one[name], abs=1e-6)
    assert math.isnan(batch["ats"][1, 1]) and not math.isnan(batch["input_ats"][1, 1])
    deep = get_metrics(
        torch.from_numpy(mix[None]),
        torch.from_numpy(mix[None]),
        torch.from_numpy(est[None]),
        query="a tone",
        clap=clap,
        sample_rate=16000,
    )
    assert all(np.shape(v) == (1, 2, 2) for v in deep.values())
    np.testing.assert_allclose(deep["input_ats"][0], batch["input_ats"], atol=1e-6)


def test_ats_takes_a_whole_float_rate_and_needs_all_three_settings(clap) -> None:
    s, e, m = (x.astype(np.float32) for x in signals(13, length=16000))
    ints = get_metrics(m, s, e, query="noise", clap=clap, sample_rate=16000)
    floats = get_metrics(m, s, e, query="noise", clap=clap, sample_rate=16000.0)
    assert floats["ats"] == pytest.approx(ints["ats"], abs=1e-12)
    with pytest.raises(AudioError, match=r"whole number of Hz, got 16000\.5"):
        get_metrics(m, s, e, query="noise", clap=clap, sample_rate=16000.5)
    with pytest.raises(ConfigError, match="missing: sample_rate"):
        get_metrics(m, s, e, query="noise", clap=clap)
    with pytest.raises(ConfigError, match="missing: clap, sample_rate"):
        get_metrics(m, s, e, query="noise")
    with pytest.raises(ConfigError, match="missing: query, clap"):  # not silently ignored
        get_metrics(m, s, e, sample_rate=16000)
