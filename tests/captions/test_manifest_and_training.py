"""``Clip.augmented_captions`` on disk, and drawing training queries from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from querysep.data.datasets import MixtureTrainingDataset
from querysep.data.manifest import Clip, read_manifest, write_manifest
from querysep.errors import ConfigError
from querysep.training.config import config_from_dict


def clips(augmented: bool = True) -> list[Clip]:
    out = []
    for i, label in enumerate(["dog", "rain", "siren", "cat"]):
        extra = [f"{label} variant {k}" for k in range(5)] if augmented else []
        for k in range(3):
            out.append(
                Clip(
                    id=f"{label}{k}",
                    audio=f"/nowhere/{label}{k}.wav",
                    captions=[f"a {label} sound", f"{label} noise"],
                    labels=[label],
                    augmented_captions=extra if i < 3 else [],
                )
            )
    return out


def test_round_trip(tmp_path: Path):
    path = tmp_path / "m.jsonl"
    write_manifest(clips(), path)
    back = read_manifest(path)
    assert [c.augmented_captions for c in back] == [c.augmented_captions for c in clips()]


def test_old_manifests_load_and_unaugmented_clips_write_as_before(tmp_path: Path):
    path = tmp_path / "old.jsonl"
    path.write_text('{"id": "a", "audio": "a.wav", "captions": ["a dog barks"]}\n')
    (clip,) = read_manifest(path)
    assert clip.augmented_captions == []
    write_manifest([clip], path)
    assert "augmented_captions" not in json.loads(path.read_text())


def test_bad_augmented_captions(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "audio": "a.wav", "augmented_captions": "a dog"}\n')
    with pytest.raises(Exception, match="augmented_captions' must be a list of strings"):
        read_manifest(path)


def queries(prob: float, seed: int = 0, data: list[Clip] | None = None) -> list[str]:
    dataset = MixtureTrainingDataset(
        data or clips(), 8000, 1.0, seed=seed, length=400, augmented_caption_prob=prob
    )
    return [dataset.draw(i).query for i in range(len(dataset))]


def test_probability_zero_leaves_training_as_it_was():
    assert queries(0.0) == queries(0.0, data=clips(augmented=False))


def test_queries_mix_original_and_augmented_captions():
    data = clips()
    augmented = {t for c in data for t in c.augmented_captions}
    for prob in (0.25, 0.5):
        drawn = queries(prob)
        share = sum(q in augmented for q in drawn) / len(drawn)
        # 3 of 4 classes have augmented captions
        assert abs(share - 0.75 * prob) < 0.08, (prob, share)
    dataset = MixtureTrainingDataset(data, 8000, 1.0, length=100, augmented_caption_prob=1.0)
    for i in range(len(dataset)):
        plan = dataset.draw(i)
        target = data[plan.target]
        pool = target.augmented_captions or target.captions  # the cat clips have none
        assert plan.query in pool


def test_queries_are_deterministic_per_seed():
    assert queries(0.5, seed=3) == queries(0.5, seed=3)
    assert queries(0.5, seed=3) != queries(0.5, seed=4)


@pytest.mark.parametrize("prob", [-0.1, 1.5])
def test_probability_is_checked(prob):
    with pytest.raises(ConfigError, match="augmented_caption_prob"):
        MixtureTrainingDataset(clips(), 8000, 1.0, augmented_caption_prob=prob)
    with pytest.raises(ConfigError, match="augmented_caption_prob"):
        config_from_dict({"data": {"augmented_caption_prob": prob}})


def test_config_field():
    config = config_from_dict({}, ["data.augmented_caption_prob=0.5"])
    assert config.data.augmented_caption_prob == 0.5
    assert config_from_dict({}).data.augmented_caption_prob == 0.0


def test_datamodule_passes_the_probability_on(tmp_path: Path):
    from querysep.training.config import DataConfig
    from querysep.training.datamodule import MixtureDataModule

    path = tmp_path / "m.jsonl"
    write_manifest(clips(), path)
    config = DataConfig(
        train=[{"manifest": str(path)}],
        augmented_caption_prob=1.0,
        preload=False,
        num_workers=0,
    )
    module = MixtureDataModule(config, sample_rate=8000, seed=1)
    module.setup("fit")
    dataset = module.train_dataset
    assert dataset is not None and dataset.augmented_caption_prob == 1.0
    augmented = {t for c in clips() for t in c.augmented_captions}
    drawn = [dataset.draw(i).query for i in range(len(dataset))]
    assert sum(q in augmented for q in drawn) == sum("cat" not in q for q in drawn)
