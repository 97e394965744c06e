from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from querysep.audio.io import load_audio
from querysep.data import Clip, Mixer, MixtureRow, make_dcase_mixture, write_mixture_list
from querysep.data.datasets import (
    AudioCache,
    FixedMixtureDataset,
    MixtureTrainingDataset,
    random_crop,
    speed_crop,
)
from querysep.errors import ConfigError, DataError

SR = 8000


def _dataset(clips: list[Clip], **kwargs: object) -> MixtureTrainingDataset:
    options: dict = {"sample_rate": SR, "segment_seconds": 0.5, "seed": 7}
    options.update(kwargs)
    return MixtureTrainingDataset(clips, **options)


def test_items_shapes_and_types(labelled_clips: list[Clip]) -> None:
    dataset = _dataset(labelled_clips)
    assert len(dataset) == 12
    item = dataset[0]
    assert set(item) == {"mixture", "target", "query"}
    for key in ("mixture", "target"):
        assert item[key].shape == (1, 4000) and item[key].dtype == torch.float32
    assert isinstance(item["query"], str)
    assert torch.isfinite(item["mixture"]).all()
    assert item["target"].abs().sum() > 0 and item["mixture"].abs().max() <= 1.0
    batch = torch.utils.data.default_collate([dataset[i] for i in range(3)])
    assert batch["mixture"].shape == (3, 1, 4000) and len(batch["query"]) == 3


def test_determinism_by_seed_and_epoch(labelled_clips: list[Clip]) -> None:
    a, b = _dataset(labelled_clips), _dataset(labelled_clips)
    for i in (0, 5, 11):
        for key in ("mixture", "target"):
            torch.testing.assert_close(a[i][key], b[i][key], rtol=0, atol=0)
        assert a[i]["query"] == b[i]["query"]
    first = [a.draw(i) for i in range(12)]
    a.set_epoch(1)
    second = [a.draw(i) for i in range(12)]
    assert first != second
    a.set_epoch(0)
    assert [a.draw(i) for i in range(12)] == first
    other_seed = _dataset(labelled_clips, seed=8)
    assert [other_seed.draw(i) for i in range(12)] != first
    # each epoch visits every target once
    assert sorted(p.target for p in first) == list(range(12))
    assert sorted(p.target for p in second) == list(range(12))


def test_interferer_never_shares_a_label(labelled_clips: list[Clip]) -> None:
    dataset = _dataset(labelled_clips, length=300, text_choice="all")
    queries = set()
    for i in range(len(dataset)):
        plan = dataset.draw(i)
        target, interferer = labelled_clips[plan.target], labelled_clips[plan.interferer]
        assert set(target.labels).isdisjoint(interferer.labels)
        assert plan.query in target.captions + [lab.replace("_", " ") for lab in target.labels]
        queries.add(plan.query)
    assert "chirping birds" in queries and "a dog sound" in queries


@pytest.mark.parametrize("choice", ["first", "label", "random"])
def test_text_choice(labelled_clips: list[Clip], choice: str) -> None:
    dataset = _dataset(labelled_clips, length=48, text_choice=choice)
    for i in range(len(dataset)):
        plan = dataset.draw(i)
        clip = labelled_clips[plan.target]
        expected = {
            "first": [clip.captions[0]],
            "label": [clip.labels[0].replace("_", " ")],
            "random": clip.captions,
        }[choice]
        assert plan.query in expected


@pytest.mark.parametrize("choice", ["first", "random", "all"])
def test_blank_captions_are_never_a_query(labelled_clips: list[Clip], choice: str) -> None:
    clips = [replace(c, captions=["   ", *c.captions]) for c in labelled_clips]
    clips[0] = replace(clips[0], captions=[" "])  # only a blank caption: its labels are used
    dataset = _dataset(clips, length=48, text_choice=choice)
    queries = [dataset.draw(i).query for i in range(len(dataset))]
    assert all(q.strip() for q in queries)  # was "   " (an "empty query" error at step 0)
    assert clips[0].labels[0].replace("_", " ") in {
        dataset.draw(i).query for i in range(len(dataset)) if dataset.draw(i).target == 0
    }


def test_query_mix_names_another_text_of_the_target_and_leaves_the_rest_alone(
    labelled_clips: list[Clip],
) -> None:
    plain = _dataset(labelled_clips, length=200, text_choice="all")
    mixed = _dataset(labelled_clips, length=200, text_choice="all", query_mix_prob=0.5)
    weights = []
    for i in range(len(plain)):
        before, plan = plain.draw(i), mixed.draw(i)
        # the draws before it are the same: target, query, interferer, gains, crops
        assert (plan.target, plan.query, plan.interferer, plan.params, plan.crop_seed) == (
            before.target,
            before.query,
            before.interferer,
            before.params,
            before.crop_seed,
        )
        assert before.query_mix is None and before.query_weight == 1.0
        if plan.query_mix is not None:
            clip = labelled_clips[plan.target]
            pool = clip.captions + [lab.replace("_", " ") for lab in clip.labels]
            assert plan.query_mix in pool and plan.query_mix != plan.query
            weights.append(plan.query_weight)
    assert 70 <= len(weights) <= 130  # about half the items, p = 0.5
    assert 0.0 <= min(weights) < 0.2 and 0.8 < max(weights) <= 1.0  # uniform in [0, 1]
    item = mixed[0]
    assert set(item) == {"mixture", "target", "query", "query_mix", "query_weight"}
    batch = torch.utils.data.default_collate([mixed[i] for i in range(4)])
    assert len(batch["query_mix"]) == 4 and batch["query_weight"].shape == (4,)
    for i in range(4):  # an item without a mix repeats its query at weight 1
        plan = mixed.draw(i)
        assert batch["query_mix"][i] == (plan.query_mix or plan.query)
        assert float(batch["query_weight"][i]) == plan.query_weight
    torch.testing.assert_close(item["mixture"], plain[0]["mixture"], rtol=0, atol=0)
    assert "query_mix" not in plain[0]

    lone = [dataclasses.replace(c, captions=[]) for c in labelled_clips]
    single = _dataset(lone, length=40, text_choice="label", query_mix_prob=1.0)
    assert all(single.draw(i).query_mix is None for i in range(40))  # one text: nothing to mix
    with pytest.raises(ConfigError, match="query_mix_prob"):
        _dataset(labelled_clips, query_mix_prob=1.5)
    # "first" queries one text a clip: a mix would reach texts it never queries
    with pytest.raises(ConfigError, match="text_choice 'first' gives one"):
        _dataset(labelled_clips, text_choice="first", query_mix_prob=0.5)


def _is_placed_in(out: np.ndarray, audio: np.ndarray, atol: float) -> bool:
    """Whether ``out`` is a window of ``audio`` (or, if shorter, ``audio`` inside zeros)."""
    n = len(out)
    if len(audio) >= n:
        windows = np.lib.stride_tricks.sliding_window_view(audio, n)
        return bool((np.abs(windows - out).max(axis=1) <= atol).any())
    return any(
        np.abs(out[s : s + len(audio)] - audio).max() <= atol
        and not np.any(np.delete(out, np.s_[s : s + len(audio)]))
        for s in range(n - len(audio) + 1)
    )


def test_targets_are_crops_of_their_files(labelled_clips: list[Clip]) -> None:
    # 0 dB gain: two 0.3-amplitude tones never trigger peak protection, so the target is
    # the clip's samples as soundfile reads them, cropped (or zero-padded) to 4000 samples,
    # up to the int16 cache's rounding.
    dataset = _dataset(labelled_clips, mixer=Mixer((0.0, 0.0)))
    for i in range(len(dataset)):
        plan, item = dataset.draw(i), dataset[i]
        target = item["target"][0].numpy()
        audio, rate = sf.read(labelled_clips[plan.target].audio, dtype="float32")
        assert rate == SR and target.shape == (4000,)
        assert _is_placed_in(target, audio, atol=1e-5), (i, len(audio))
        assert np.abs(target).max() > 0.25  # the 0.3-amplitude tone, not a silent crop


def _peak_hz(signal: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(signal))) * SR / len(signal))


def _hum_and_beep(folder: Path, write_audio: Callable[..., Path], seconds: float) -> list[Clip]:
    """A 300 Hz clip ("low hum") and a 1200 Hz one ("high beep"), of different classes."""
    low = write_audio(folder / "low.wav", freq=300.0, seconds=seconds)
    high = write_audio(folder / "high.wav", freq=1200.0, seconds=seconds)
    return [
        Clip(id="low", audio=str(low), captions=["low hum"], labels=["low"]),
        Clip(id="high", audio=str(high), captions=["high beep"], labels=["high"]),
    ]


def test_mixture_is_target_plus_interferer_crop(
    tmp_path: Path, write_audio: Callable[..., Path]
) -> None:
    clips = _hum_and_beep(tmp_path, write_audio, seconds=0.5)
    dataset = _dataset(clips, mixer=Mixer((0.0, 0.0)))
    files = {c.captions[0]: sf.read(c.audio, dtype="float32")[0] for c in clips}
    for i in range(2):
        item = dataset[i]
        mixture, target = item["mixture"][0].numpy(), item["target"][0].numpy()
        # clips as long as the segment: the target is the whole file, sample for sample
        np.testing.assert_allclose(target, files[item["query"]], rtol=0, atol=1e-5)
        interference = mixture - target
        peak_t, peak_i = _peak_hz(target), _peak_hz(interference)
        assert {peak_t, peak_i} == {300.0, 1200.0}
        assert item["query"] == ("low hum" if peak_t == 300.0 else "high beep")
        # 0 dB gain after energy matching: equal RMS
        assert np.sqrt(np.mean(interference**2)) == pytest.approx(
            np.sqrt(np.mean(target**2)), rel=1e-3
        )


def test_speed_change_moves_pitch_and_keeps_the_target_exact(
    tmp_path: Path, write_audio: Callable[..., Path]
) -> None:
    clips = _hum_and_beep(tmp_path, write_audio, seconds=2.0)
    plain = _dataset(clips, mixer=Mixer((0.0, 0.0)), length=16)
    off = _dataset(clips, mixer=Mixer((0.0, 0.0)), length=16, speed_range=(1.0, 1.0))
    varied = _dataset(clips, mixer=Mixer((0.0, 0.0)), length=16, speed_range=(0.8, 1.25))
    ratios = []
    for i in range(16):
        # (1, 1) draws nothing: items are those of a dataset built without the option
        torch.testing.assert_close(off[i]["mixture"], plain[i]["mixture"], rtol=0, atol=0)
        item = varied[i]
        target, mixture = item["target"][0].numpy(), item["mixture"][0].numpy()
        base = 300.0 if item["query"] == "low hum" else 1200.0
        other = 1500.0 - base
        ratio_t = _peak_hz(target) / base
        ratio_i = _peak_hz(mixture - target) / other
        assert 0.8 - 0.01 <= ratio_t <= 1.25 + 0.01 and 0.8 - 0.01 <= ratio_i <= 1.25 + 0.01
        # the target fills the segment (no zero tail) and is what the mixture holds
        assert np.abs(target[-400:]).max() > 0.1
        assert _peak_hz(plain[i]["target"][0].numpy()) == base
        ratios.append(round(ratio_t, 2))
    assert len(set(ratios)) > 8  # a speed of its own per item


def test_speed_crop_rates() -> None:
    rng = np.random.Generator(np.random.PCG64(0))
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 500.0 * t).astype(np.float32)
    for speed in (0.5, 0.9, 1.1, 2.0):
        out = speed_crop(tone, 4000, SR, speed, rng)
        assert out.shape == (4000,)
        assert _peak_hz(out) == pytest.approx(500.0 * speed, abs=2 * SR / 4000)
    # too short to fill the segment at speed 2: 1000 samples become 500, the rest silence
    # (soxr's filter rings a few samples into the padding)
    loud = np.abs(speed_crop(tone[:1000], 4000, SR, 2.0, rng)) > 0.01
    assert 480 <= np.count_nonzero(loud) <= 560


def test_random_crop_pads_short_and_prefers_energy() -> None:
    rng = np.random.Generator(np.random.PCG64(0))
    short = np.arange(1, 6, dtype=np.float32)
    out = random_crop(short, 8, rng)
    assert out.shape == (8,) and sorted(out[out != 0].tolist()) == short.tolist()
    assert np.count_nonzero(out) == 5
    # 100 s of silence with a burst of 2 s: three candidates find it more often than one
    burst = np.zeros(10_000, np.float32)
    burst[4000:6000] = 1.0
    hits = {k: 0 for k in (1, 3)}
    for k in hits:
        rng = np.random.Generator(np.random.PCG64(1))
        for _ in range(300):
            hits[k] += bool(random_crop(burst, 1000, rng, num_candidates=k).any())
    assert hits[3] > hits[1] + 40
    assert random_crop(burst, 10_000, rng) is burst


def test_cache_is_compact_and_close(labelled_clips: list[Clip]) -> None:
    dataset = _dataset(labelled_clips)
    dataset.preload(num_workers=2)
    assert len(dataset.cache) == 12
    total = sum(round(c.duration * SR) for c in labelled_clips)
    assert dataset.cache.nbytes == pytest.approx(2 * total, abs=24)
    audio, _ = load_audio(labelled_clips[0].audio, SR, mono=True)
    cached = dataset.cache.get(labelled_clips[0].audio)
    assert cached.dtype == np.float32
    np.testing.assert_allclose(cached, audio[0], atol=np.abs(audio).max() / 32767)
    clone = pickle.loads(pickle.dumps(dataset))
    torch.testing.assert_close(clone[3]["mixture"], dataset[3]["mixture"])


def test_lru_cache(labelled_clips: list[Clip]) -> None:
    cache = AudioCache(SR, max_items=2)
    for clip in labelled_clips[:3]:
        cache.get(clip.audio)
    assert len(cache) == 2 and labelled_clips[0].audio not in cache


def test_training_dataset_errors(labelled_clips: list[Clip]) -> None:
    same = [Clip(id=f"{k}", audio=f"/{k}.wav", captions=["a"], labels=["x"]) for k in range(3)]
    with pytest.raises(DataError, match="no usable target"):
        _dataset(same)
    with pytest.raises(ConfigError):
        _dataset(labelled_clips, text_choice="best")
    with pytest.raises(ConfigError):
        _dataset(labelled_clips, segment_seconds=0)
    with pytest.raises(IndexError):
        _dataset(labelled_clips)[12]
    with pytest.raises(ConfigError, match="speed_range"):
        _dataset(labelled_clips, speed_range=(0.3, 1.0))
    with pytest.raises(ConfigError, match="speed_range"):
        _dataset(labelled_clips, speed_range=(1.1, 0.9))


def test_fixed_mixture_dataset_matches_dcase_protocol(
    tmp_path: Path, labelled_clips: list[Clip]
) -> None:
    rows = [
        MixtureRow("a dog sound", source="dog_0", noise="rain_2", snr=-5.0),
        MixtureRow("a siren sound", source="siren_1", noise="dog_0", snr=10.0),
    ]
    audio_dir = tmp_path / "audio"
    dataset = FixedMixtureDataset(rows, audio_dir, SR)
    assert len(dataset) == 2
    for row, item in zip(rows, dataset, strict=True):
        source, _ = load_audio(audio_dir / f"{row.source}.wav", SR, mono=True)
        noise, _ = load_audio(audio_dir / f"{row.noise}.wav", SR, mono=True)
        mixture, target = make_dcase_mixture(source[0], noise[0], float(row.snr or 0))
        assert item["id"] == row.id and item["query"] == row.caption
        assert item["mixture"].shape == (1, source.shape[-1])
        np.testing.assert_array_equal(item["mixture"][0].numpy(), mixture)
        np.testing.assert_array_equal(item["target"][0].numpy(), target)
    cached = FixedMixtureDataset(rows, audio_dir, SR, cache=True)
    torch.testing.assert_close(cached[1]["mixture"], dataset[1]["mixture"], rtol=0, atol=0)
    assert len(cached.cache) == 2
    with pytest.raises(DataError, match="no audio file for 'cat'"):
        FixedMixtureDataset([MixtureRow("x", source="cat", noise="dog_0", snr=0)], audio_dir, SR)


def test_fixed_mixture_dataset_triplets(tmp_path: Path, write_audio: Callable[..., Path]) -> None:
    write_audio(tmp_path / "mix" / "1.wav", freq=500, seconds=0.5)
    write_audio(tmp_path / "tgt" / "1.wav", freq=700, seconds=0.4)
    rows = [MixtureRow("a tone", mixture="mix/1.wav", target="tgt/1.wav")]
    write_mixture_list(rows, tmp_path / "list.csv")
    item = FixedMixtureDataset(rows, tmp_path, SR)[0]
    assert item["mixture"].shape == item["target"].shape == (1, 3200)
    # both cut to the shorter file; the values are the files' own, not swapped or rescaled
    mixture, _ = sf.read(tmp_path / "mix" / "1.wav", dtype="float32")
    target, _ = sf.read(tmp_path / "tgt" / "1.wav", dtype="float32")
    np.testing.assert_array_equal(item["mixture"][0].numpy(), mixture[:3200])
    np.testing.assert_array_equal(item["target"][0].numpy(), target)
    assert item["id"] == "1"
    with pytest.raises(DataError, match="not found"):
        FixedMixtureDataset([MixtureRow("x", mixture="m.wav", target="t.wav")], tmp_path, SR)
