from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from querysep.data import Clip, Mixer, MixParams
from querysep.data.datasets import MixtureTrainingDataset
from querysep.data.effects import (
    EQ_LOW_HZ,
    EQ_POINTS,
    Effects,
    EffectsPlan,
    eq_curve,
    synthetic_rir,
)
from querysep.errors import ConfigError

SR = 8000
TONES = {"low hum": 300.0, "high beep": 1200.0, "top whistle": 2400.0}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_mix_all_with_one_interferer_is_mix_and_sums_every_interferer() -> None:
    rng = np.random.default_rng(0)
    target, a, b = (rng.standard_normal(4000).astype(np.float32) * s for s in (0.1, 0.3, 0.02))
    mixer = Mixer((-5.0, 5.0), max_offset=0.3)
    p, q = MixParams(gain_db=3.0, offset=0.1), MixParams(gain_db=-6.0, offset=0.0)
    for got, want in zip(mixer.mix_all(target, [a], [p]), mixer.mix(target, a, p), strict=True):
        np.testing.assert_array_equal(got, want)
    mixture, tgt, interference = mixer.mix_all(target, [a, b], [p, q])
    np.testing.assert_array_equal(mixture, tgt + interference)
    # each interferer is matched to the target's level, then given its own gain
    alone_a = mixer.mix(target, a, p)[2]
    alone_b = mixer.mix(target, b, q)[2]
    np.testing.assert_allclose(interference, alone_a + alone_b, atol=1e-6)
    assert _rms(alone_b) == pytest.approx(_rms(target) * 10 ** (-6 / 20), rel=1e-4)
    loud = Mixer((20.0, 20.0)).mix_all(target, [a, b], [MixParams(20.0), MixParams(20.0)])
    assert np.abs(loud[0]).max() == pytest.approx(0.9, abs=1e-6)  # the sum's peak protected
    np.testing.assert_array_equal(loud[0], loud[1] + loud[2])
    with pytest.raises(ValueError, match="one MixParams per interferer"):
        mixer.mix_all(target, [a, b], [p])


def test_synthetic_rir_has_its_direct_path_ratio_and_decay() -> None:
    sr, rt60 = 16000, 0.8
    rir = synthetic_rir(np.random.default_rng(3), sr, rt60, drr_db=6.0)
    assert rir.shape == (round(rt60 * sr),) and rir.dtype == np.float32
    assert rir[0] == 1.0 and not rir[1 : round(0.0025 * sr)].any()
    tail = rir[1:].astype(np.float64)
    assert 10 * math.log10(1.0 / np.sum(tail**2)) == pytest.approx(6.0, abs=1e-3)
    # the level falls 60 dB per rt60: two 10 %-long windows 0.6 * rt60 apart differ by 36 dB
    win = int(0.1 * rt60 * sr)
    early = _rms(rir[int(0.1 * rt60 * sr) :][:win])
    late = _rms(rir[int(0.7 * rt60 * sr) :][:win])
    assert 20 * math.log10(early / late) == pytest.approx(36.0, abs=2.0)


def test_reverb_and_eq_are_linear_filters_of_each_source() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(3000), rng.standard_normal(3000)
    wet = EffectsPlan(rt60=0.3, drr_db=(3.0, 9.0), seed=11)
    out = wet.apply([x, y], SR)
    rirs = np.random.Generator(np.random.PCG64(11))  # the plan's impulse responses, in order
    for signal, drr, got in zip((x, y), (3.0, 9.0), out, strict=True):
        h = synthetic_rir(rirs, SR, 0.3, drr)
        np.testing.assert_allclose(got, np.convolve(signal, h)[:3000], atol=1e-4)  # causal
    gains = (6.0, -6.0, 3.0, 0.0, -3.0, 6.0)
    ex, ey, exy = EffectsPlan(eq_db=gains).apply([x, y, x + y], SR)
    np.testing.assert_allclose(ex + ey, exy, atol=1e-4)  # one EQ for every source
    # a tone at a control frequency comes out scaled by that control point's gain
    control = np.geomspace(EQ_LOW_HZ, SR / 2, EQ_POINTS)
    t = np.arange(SR) / SR
    for k in (1, 2, 3):
        tone = np.sin(2 * np.pi * control[k] * t)
        (got,) = EffectsPlan(eq_db=gains).apply([tone], SR)
        middle = slice(SR // 4, 3 * SR // 4)  # away from the ends' transients
        ratio_db = 20 * math.log10(_rms(got[middle]) / _rms(tone[middle]))
        assert ratio_db == pytest.approx(gains[k], abs=0.3)


def test_effects_draw_nothing_when_off_and_check_their_settings() -> None:
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    assert Effects().draw(rng, 3) == EffectsPlan()
    assert rng.bit_generator.state == state  # no number drawn
    plan = Effects(reverb_prob=1.0, eq_prob=1.0).draw(rng, 3)
    assert plan.rt60 is not None and 0.2 <= plan.rt60 <= 1.0
    assert len(plan.drr_db) == 3 and plan.eq_db is not None and len(plan.eq_db) == EQ_POINTS
    for bad, match in (
        ({"reverb_prob": 1.5}, "reverb_prob"),
        ({"rt60": (1.0, 0.5)}, "rt60"),
        ({"rt60": (0.01, 0.5)}, "rt60"),
        ({"drr_db": (0.0, 40.0)}, "drr_db"),
        ({"eq_db": 30.0}, "eq_db"),
    ):
        with pytest.raises(ConfigError, match=match):
            Effects(**bad)  # type: ignore[arg-type]


def _tones(folder: Path, write_audio: Callable[..., Path]) -> list[Clip]:
    clips = []
    for caption, freq in TONES.items():
        path = write_audio(folder / f"{int(freq)}.wav", freq=freq, seconds=2.0)
        clips.append(Clip(id=path.stem, audio=str(path), captions=[caption], labels=[caption]))
    return clips


def _magnitude_at(signal: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(spectrum[round(freq * len(signal) / SR)])


def test_three_sources_with_reverb_and_eq_keep_the_target_exact(
    tmp_path: Path, write_audio: Callable[..., Path]
) -> None:
    clips = _tones(tmp_path, write_audio)
    options = {"sample_rate": SR, "segment_seconds": 1.0, "seed": 3, "length": 12}
    dry = MixtureTrainingDataset(clips, mixer=Mixer((0.0, 0.0)), **options)
    off = MixtureTrainingDataset(
        clips, mixer=Mixer((0.0, 0.0)), effects=Effects(), three_source_prob=0.0, **options
    )
    wet = MixtureTrainingDataset(
        clips,
        mixer=Mixer((0.0, 0.0)),
        effects=Effects(reverb_prob=1.0, eq_prob=1.0),
        three_source_prob=1.0,
        **options,
    )
    changed = 0
    for i in range(12):
        for key in ("mixture", "target"):  # options at their defaults draw nothing
            torch.testing.assert_close(off[i][key], dry[i][key], rtol=0, atol=0)
        item = wet[i]
        assert item["query"] == dry[i]["query"]  # the plan's earlier draws are kept
        target, mixture = item["target"][0].numpy(), item["mixture"][0].numpy()
        rest = mixture - target
        own = TONES[item["query"]]
        others = [f for f in TONES.values() if f != own]
        # the target is the query's tone as the mixture holds it, and nothing else
        assert _magnitude_at(target, own) > 100 * max(_magnitude_at(target, f) for f in others)
        # the rest holds both other tones (three sources) and none of the target's
        peaks = [_magnitude_at(rest, f) for f in others]
        assert min(peaks) > 100 * _magnitude_at(rest, own)
        assert np.isfinite(mixture).all() and np.abs(mixture).max() <= 1.0
        changed += not np.allclose(target, dry[i]["target"][0].numpy(), atol=1e-3)
    assert changed == 12  # every target was reverberated and equalised
    with pytest.raises(ConfigError, match="three_source_prob"):
        MixtureTrainingDataset(clips, three_source_prob=2.0, **options)


def test_the_eq_curve_sits_on_the_fft_bins_of_odd_sizes_too() -> None:
    gains = (0.0, 0.0, 0.0, 0.0, 0.0, 12.0)  # rising only towards Nyquist
    even = 20 * np.log10(eq_curve(8, 16000, gains))
    odd = 20 * np.log10(eq_curve(9, 16000, gains))  # its last bin: 4 * 16000 / 9 = 7111 Hz
    assert even[-1] == pytest.approx(12.0) and len(odd) == 5
    control = np.geomspace(EQ_LOW_HZ, 8000.0, EQ_POINTS)
    expected = 12.0 * math.log(7111.1 / control[4]) / math.log(8000.0 / control[4])
    assert odd[-1] == pytest.approx(expected, abs=0.01)
