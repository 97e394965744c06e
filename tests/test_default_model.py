"""The bundled default model: checked on load, and it really separates what the query names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from querysep import Separator
from querysep.audio import load_audio
from querysep.data.mixing import make_dcase_mixture
from querysep.errors import CheckpointError
from querysep.metrics import sdr, si_sdr

FIXTURES = Path(__file__).parent / "fixtures" / "esc50"


@pytest.fixture(scope="module")
def default() -> Separator:
    return Separator()  # no model named: the bundled default


def dog_and_rain() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mixture, dog, rain): two fold-4 test clips mixed at 0 dB as the DCASE protocol does."""
    dog, _ = load_audio(FIXTURES / "4-182395-A-0.flac", 16000, mono=True)
    rain, _ = load_audio(FIXTURES / "4-160999-A-10.flac", 16000, mono=True)
    mixture, dog_scaled = make_dcase_mixture(dog[0], rain[0], 0)
    return mixture, dog_scaled, mixture - dog_scaled


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return dog_and_rain()


def test_default_is_the_bundled_trained_model(default: Separator) -> None:
    assert default.model.metadata["name"] == "esc50-minilm"
    assert default.sample_rate == 16000
    encoder = default.model.text_encoder
    assert encoder.kind == "nearest" and encoder.inner.kind == "minilm"


def test_the_bundled_bank_is_the_stage_2_training_texts() -> None:
    """The bundled config's texts are exactly what ``model.query_bank: true`` in the stage-2
    recipe writes: the query texts of its training data (label, train and more captions;
    never a held-out caption)."""
    from querysep.data.recipes.esc50 import builtin_captions
    from querysep.training.config import load_config
    from querysep.training.datamodule import MixtureDataModule

    repo = Path(__file__).parents[1]
    esc50 = repo.parent / "shared" / "datasets" / "esc50-16k"  # beside the repository
    config = load_config(
        repo / "configs" / "default-esc50-finetune.yaml",
        ["data.preload=false", "data.validation=null", f"data.train.0.prepare.root={esc50}"],
    )
    assert config.model.query_bank
    data = MixtureDataModule(config.data, 16000, seed=config.trainer.seed)
    data.setup("fit")
    assert data.train_dataset is not None
    texts = Separator().model.text_encoder.texts
    assert texts == data.train_dataset.query_texts()
    assert len(texts) == 557
    from querysep.pretrained import list_models

    listed = {info.name: info.description for info in list_models()}  # querysep models
    assert f"nearest of its {len(texts)} training texts" in listed["esc50-minilm"]
    heldout = {c for v in builtin_captions("heldout").values() for c in v}
    assert not heldout & set(texts)


def test_a_new_phrasing_is_answered_as_a_training_text(default: Separator, scene) -> None:
    mixture = scene[0]
    assert default.answered_as(["a hound baying"]) == ["dog"]
    snapped = default.separate_tensor(mixture, 16000, "a hound baying").numpy()[0, 0]
    as_label = default.separate_tensor(mixture, 16000, "dog").numpy()[0, 0]
    np.testing.assert_allclose(snapped, as_label, atol=1e-6)
    plain = Separator(default.model, snap_queries=False)
    raw = plain.separate_tensor(mixture, 16000, "a hound baying").numpy()[0, 0]
    assert np.abs(raw - snapped).max() > 1e-3  # without snapping: its own embedding


def test_query_selects_the_source(default: Separator, scene) -> None:
    mixture, dog, rain = scene
    est = default.separate_tensor(mixture, 16000, ["a dog barking", "rain falling"]).numpy()[:, 0]
    base_dog, base_rain = sdr(dog, mixture), sdr(rain, mixture)
    # each query improves its own source clearly (SDRi and SI-SDR), not just the volume
    assert sdr(dog, est[0]) - base_dog > 3.0
    assert si_sdr(dog, est[0]) > si_sdr(dog, mixture) + 3.0
    assert sdr(rain, est[1]) - base_rain > 3.0
    # and the wrong query does not give the other source
    assert sdr(dog, est[1]) < sdr(dog, est[0]) - 6.0


def test_corrupt_bundled_weights_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from querysep import pretrained

    info = pretrained._MODELS["esc50-minilm"]
    monkeypatch.setitem(
        pretrained._MODELS, "esc50-minilm", dataclasses.replace(info, sha256="0" * 64)
    )
    with pytest.raises(CheckpointError, match="corrupt"):
        pretrained.load_model("esc50-minilm")


def test_every_bundled_separator_pins_its_config() -> None:
    from querysep import pretrained

    # config.json changes what a model does (esc50-minilm's holds its bank of texts), so a
    # bundled one is checked like the weights
    for info in pretrained._MODELS.values():
        if info.folder is None:
            continue
        pinned = [path for path, _ in pretrained._bundled_files(info)]
        config = pretrained.verify_bundled(info) / "config.json"
        assert config in pinned, info.name


def test_the_bundled_bank_embeddings_are_minilm_s_and_are_read() -> None:
    import torch

    from querysep.models.text import NearestTextEncoder
    from querysep.pretrained import load_model

    encoder = load_model("esc50-minilm").text_encoder
    assert isinstance(encoder, NearestTextEncoder)
    assert encoder.has_embeddings  # read from the folder, before any query: not stale
    shipped = encoder.embeddings().clone()
    fresh = encoder.inner.encode(encoder.texts)  # what the first query computed before
    torch.testing.assert_close(shipped, fresh, rtol=0, atol=1e-5)


def test_minilm_s_far_cosine_keeps_new_phrasings_of_known_sounds_near() -> None:
    """The calibration MiniLMTextEncoder.far_cosine documents, on training texts only:
    every `more` caption is nearer than it to a label or `train` caption of ESC-50, while
    queries for no sound at all fall below it from every text of the bundled model."""
    import torch.nn.functional as F

    from querysep.data.recipes.esc50 import builtin_captions
    from querysep.models.text import MiniLMTextEncoder, NearestTextEncoder
    from querysep.pretrained import load_model

    encoder = load_model("esc50-minilm").text_encoder
    assert isinstance(encoder, NearestTextEncoder)
    inner = encoder.inner
    assert isinstance(inner, MiniLMTextEncoder) and inner.far_cosine == 0.5
    train, more = builtin_captions("train"), builtin_captions("more")
    known = [t for c in sorted(train) for t in (c.replace("_", " "), *train[c])]
    new = [t for c in sorted(more) for t in more[c]]
    cosines = F.normalize(inner.encode(new), dim=-1) @ F.normalize(inner.encode(known), dim=-1).T
    assert float(cosines.max(dim=-1).values.min()) >= 0.53
    nonsense = ["the stock market", "quantum physics lecture", "a recipe for lasagna"]
    assert all(m.far for m in encoder.matches(nonsense))


@pytest.mark.parametrize("past_the_hop", [253, 254, 255])
def test_the_end_of_a_clip_off_the_hop_grid_is_not_blown_up(
    default: Separator, scene: tuple[np.ndarray, np.ndarray, np.ndarray], past_the_hop: int
) -> None:
    """A length 253-255 samples past a multiple of the hop left the last samples covered by
    the very edge of one STFT window; the inverse STFT divided by its tiny weight, and the
    estimate ended in peaks of 3-11 (clipped clicks in a 16-bit file) from a tail at 0.01."""
    mixture = scene[0]
    n = 256 * 63 + past_the_hop  # about 1 s
    estimate = default.separate_tensor(mixture[:n], 16000, "a dog barking")[0, 0].numpy()
    assert estimate.shape == (n,)
    tail, body = np.abs(estimate[-16:]).max(), np.abs(estimate[:-16]).max()
    assert tail <= max(2 * np.abs(mixture[:n][-16:]).max(), 0.1 * body)
    # the rest is what the aligned length gives
    aligned = default.separate_tensor(mixture[: 256 * 64], 16000, "a dog barking")[0, 0].numpy()
    assert sdr(aligned[: n - 512], estimate[: n - 512]) > 30
