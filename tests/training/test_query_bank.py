"""model.query_bank: the exported model answers with the nearest training text."""

from __future__ import annotations

from pathlib import Path

import pytest

from querysep.errors import ConfigError
from querysep.models.text import BANK_NAME, NearestTextEncoder
from querysep.pretrained import load_model
from querysep.training.config import config_from_dict
from querysep.training.run import train

from .conftest import tiny_config


def test_the_exported_model_holds_the_training_texts_and_a_fine_tune_drops_them(
    sine_data: dict[str, Path], tmp_path: Path
) -> None:
    raw = tiny_config(sine_data, tmp_path / "bank", max_steps=4, val_every_n_steps=4)
    raw["model"]["query_bank"] = True
    raw["data"]["caption"] = "both"
    result = train(config_from_dict(raw), echo=lambda _m: None)
    model = load_model(str(result.exported))
    assert isinstance(model.text_encoder, NearestTextEncoder)
    assert model.text_encoder.texts == ["a sine tone", "sine"]  # every text a query can be
    assert model.text_encoder.inner.to_config() == {"kind": "hashing", "dim": 16}
    assert model.text_encoder.nearest(["a sine tone please"]) == ["a sine tone"]
    # the export keeps the texts' embeddings: read on loading, not computed on a first query
    assert (result.exported / BANK_NAME).is_file()
    assert load_model(str(result.exported)).text_encoder.has_embeddings

    plain = tiny_config(sine_data, tmp_path / "plain", max_steps=2, val_every_n_steps=2)
    plain["model"] = {"init_from": str(result.exported)}
    messages: list[str] = []
    tuned = load_model(str(train(config_from_dict(plain), echo=messages.append).exported))
    assert any("nearest of its 2 training texts" in m and "query_bank" in m for m in messages)
    # fine-tuned without query_bank: new training texts must not be snapped to old ones
    assert tuned.text_encoder.to_config() == {"kind": "hashing", "dim": 16}

    again = tiny_config(sine_data, tmp_path / "again", max_steps=2, val_every_n_steps=2)
    again["model"] = {"init_from": str(result.exported), "query_bank": True}
    again["data"]["caption"] = "labels"
    renewed = load_model(str(train(config_from_dict(again), echo=lambda _m: None).exported))
    assert renewed.text_encoder.to_config()["texts"] == ["sine"]  # this run's texts, once


def test_query_bank_cannot_go_with_a_trained_text_encoder(
    sine_data: dict[str, Path], tmp_path: Path
) -> None:
    raw = tiny_config(sine_data, tmp_path)
    raw["model"].update(query_bank=True, train_text_encoder=True)
    with pytest.raises(ConfigError, match="query_bank"):
        config_from_dict(raw)
