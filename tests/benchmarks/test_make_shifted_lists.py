"""benchmarks/make_shifted_lists.py: the fold-4 test sets with rooms, filters, three sources."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    path = ROOT / "benchmarks/make_shifted_lists.py"
    spec = importlib.util.spec_from_file_location("make_shifted_lists", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shoebox_rir_starts_at_its_direct_path_and_reflects_less_with_absorbing_walls() -> None:
    m = _script()
    room, src, mic = np.array([5.0, 4.0, 3.0]), np.array([1.0, 1.0, 1.5]), np.array([4.0, 3.0, 1.2])
    live = m.shoebox_rir(room, src, mic, beta=0.95, seconds=0.5)
    dead = m.shoebox_rir(room, src, mic, beta=0.5, seconds=0.5)
    assert live[0] == 1.0 and dead[0] == 1.0  # the direct path first, at unit gain
    direct = np.linalg.norm(src - mic)
    assert len(live) == int(0.5 * m.SR) - round(direct * m.SR / m.SPEED_OF_SOUND)
    # the first reflection (off the floor: the mirrored source at z = -1.5) arrives on time
    floor = math.dist(src * [1, 1, -1], mic)
    lag = round(floor * m.SR / m.SPEED_OF_SOUND) - round(direct * m.SR / m.SPEED_OF_SOUND)
    assert dead[lag] == pytest.approx(0.5 * direct / floor, rel=1e-5)
    assert not dead[1 : lag - 30].any()  # nothing before the earliest wall's echo
    assert np.sum(live[1:] ** 2) > 4 * np.sum(dead[1:] ** 2)  # more reverberant
    energy = np.cumsum(live[::-1] ** 2)[::-1]
    assert energy[len(live) // 2] < 0.5 * energy[1]  # and decaying


def test_add_interferer_sets_its_snr_against_the_target_and_protects_the_peak() -> None:
    m = _script()
    rng = np.random.default_rng(0)
    target = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    mixture = target + (0.05 * rng.standard_normal(8000)).astype(np.float32)
    extra = rng.standard_normal(6000).astype(np.float32)  # shorter: zero-padded
    mix, tgt = m.add_interferer(mixture, target, extra, snr_db=6.0)
    np.testing.assert_allclose(tgt, target, atol=0)  # no peak above 1: unscaled
    added = mix - mixture
    snr = 10 * math.log10(np.mean(target.astype(np.float64) ** 2) / np.mean(added[:6000] ** 2))
    # measured on the interferer's own samples (the rest is padding)
    assert snr == pytest.approx(6.0 - 10 * math.log10(8000 / 6000), abs=0.01)
    assert not added[6000:].any()
    loud_mix, loud_tgt = m.add_interferer(mixture, target, extra, snr_db=-40.0)
    assert np.abs(loud_mix).max() == pytest.approx(0.9, abs=1e-6)
    scale = float(loud_tgt[0] / target[0])
    np.testing.assert_allclose(loud_tgt, target * scale, rtol=1e-5)
    assert 0 < scale < 1


def test_band_limiting_filters_every_signal_alike() -> None:
    m = _script()
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(16000), rng.standard_normal(16000)
    t = np.arange(16000) / m.SR
    tones = [np.sin(2 * np.pi * f * t) for f in (800.0, 40.0, 7900.0)]
    middle = slice(4000, 12000)  # away from the ends

    def level_db(x: np.ndarray, ref: np.ndarray) -> float:
        return 10 * math.log10(np.mean(x[middle] ** 2) / np.mean(ref[middle] ** 2))

    for seed in range(6):  # low-pass, high-pass and telephone band all get drawn
        fa, fb, fab, *out = m.band_limit([a, b, a + b, *tones], np.random.default_rng(seed))
        np.testing.assert_allclose(fa + fb, fab, atol=1e-4)  # one linear filter for all
        # 800 Hz passes every kind; 40 Hz or 7.9 kHz (or both) is cut by more than 20 dB
        assert level_db(out[0], tones[0]) == pytest.approx(0.0, abs=0.5)
        assert min(level_db(out[1], tones[1]), level_db(out[2], tones[2])) < -20.0
