"""The nearest-training-text encoder (``kind: nearest``) and the Separator's snap switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from querysep import Separator
from querysep.errors import ConfigError
from querysep.models.separator import TextQueriedSeparator
from querysep.models.text import (
    HashingTextEncoder,
    NearestTextEncoder,
    build_text_encoder,
    check_text_encoder_config,
)
from querysep.pretrained import load_model

TEXTS = ["a dog barking", "rain falling on a roof", "a siren wailing", "a cat meowing"]
INNER = {"kind": "hashing", "dim": 64}


def _nearest_by_hand(inner: HashingTextEncoder, query: str) -> str:
    sims = F.normalize(inner.encode([query]), dim=-1) @ F.normalize(inner.encode(TEXTS), dim=-1).T
    return TEXTS[int(sims.argmax())]


def test_training_texts_pass_unchanged_and_others_take_their_nearest() -> None:
    encoder = NearestTextEncoder(INNER, TEXTS)
    inner = HashingTextEncoder(dim=64)
    assert encoder.dim == 64
    torch.testing.assert_close(encoder.encode(TEXTS), inner.encode(TEXTS))
    queries = ["a dog barking loudly", "heavy rain falling", "the siren of a police car"]
    expected = [_nearest_by_hand(inner, q) for q in queries]
    assert expected == [TEXTS[0], TEXTS[1], TEXTS[2]]  # word overlap decides for hashing
    assert encoder.nearest(queries) == expected
    torch.testing.assert_close(encoder.encode(queries), inner.encode(expected))
    assert not torch.allclose(encoder.encode(queries), inner.encode(queries))


def test_the_config_round_trips_and_wraps_once() -> None:
    encoder = NearestTextEncoder(INNER, [*TEXTS, TEXTS[0]])  # a repeat is dropped
    config = encoder.to_config()
    assert config == {"kind": "nearest", "inner": {"kind": "hashing", "dim": 64}, "texts": TEXTS}
    again = build_text_encoder(config)
    assert isinstance(again, NearestTextEncoder)
    torch.testing.assert_close(
        again.encode(["a wailing siren"]), encoder.encode(["a wailing siren"])
    )
    for bad, match in (
        ({"kind": "nearest", "inner": INNER, "texts": []}, "non-empty list of texts"),
        ({"kind": "nearest", "inner": INNER, "texts": "a dog"}, "texts: expected a list"),
        ({"kind": "nearest", "inner": INNER, "texts": ["a dog", "  "]}, "texts"),
        ({"kind": "nearest", "inner": config, "texts": TEXTS}, "cannot wrap another"),
        ({"kind": "nearest", "inner": {"kind": "nope"}, "texts": TEXTS}, "unknown text encoder"),
    ):
        with pytest.raises(ConfigError, match=match):
            build_text_encoder(bad)
    # the inner encoder's config is checked as part of this one: the key names the path
    for inner, key in (
        ({"kind": "hashing", "dim": -3}, "inner.dim"),
        ({"kind": "hashing", "dmi": 64}, "inner.dmi"),
        ({"kind": "nope"}, "inner.kind"),
        (5, "inner"),
    ):
        bad = {"kind": "nearest", "inner": inner, "texts": TEXTS}
        with pytest.raises(ConfigError) as caught:
            check_text_encoder_config(bad)  # loads nothing
        assert caught.value.key == key
    tiny = load_model("test-tiny")
    config = {
        **tiny.config_dict(),
        "text_encoder": {"kind": "nearest", "inner": {"kind": "hashing", "dim": 0}, "texts": TEXTS},
    }
    with pytest.raises(ConfigError, match=r"^config\.json: text_encoder\.inner\.dim: "):
        TextQueriedSeparator.from_config(config, source="config.json")


def test_the_separator_snaps_unless_told_not_to(tmp_path) -> None:
    tiny = load_model("test-tiny")
    inner = tiny.text_encoder
    texts = ["a dog barking", "rain", "a siren"]
    model = TextQueriedSeparator(tiny.net, NearestTextEncoder(inner, texts), tiny.metadata)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"))
    assert isinstance(loaded.text_encoder, NearestTextEncoder)
    assert loaded.text_encoder.texts == texts
    query = "a big dog barking at night"
    snapping = Separator(loaded)
    plain = Separator(loaded, snap_queries=False)
    nearest = loaded.text_encoder.nearest([query])
    torch.testing.assert_close(snapping.encode([query]), inner.encode(nearest))
    torch.testing.assert_close(plain.encode([query]), inner.encode([query]))
    assert snapping.answered_as([query]) == nearest and plain.answered_as([query]) is None
    mixture = torch.randn(1, 8000).numpy()
    a = snapping.separate_tensor(mixture, 16000, query)
    b = Separator(loaded).separate_tensor(mixture, 16000, nearest[0])
    torch.testing.assert_close(a, b)  # the query is answered exactly as its nearest text
    assert Separator(tiny).answered_as([query]) is None  # a model without a bank


def test_an_evaluation_folder_records_the_bank(tmp_path) -> None:
    """Resuming an evaluation checks each system's settings: a model answering through a
    bank records it, so scores made without it (or with other texts) are not mixed in."""
    from querysep.evaluation.systems import ModelSystem

    tiny = load_model("test-tiny")
    for name, texts in (("a", ["a dog barking", "rain"]), ("b", ["a dog barking", "a siren"])):
        encoder = NearestTextEncoder(tiny.text_encoder, texts)
        TextQueriedSeparator(tiny.net, encoder, tiny.metadata).save_pretrained(tmp_path / name)
    first, second = ModelSystem(str(tmp_path / "a")), ModelSystem(str(tmp_path / "b"))
    assert len(first.settings["query_bank"]) == 16
    assert first.settings["query_bank"] != second.settings["query_bank"]
    first.separator.snap_queries = False
    assert "query_bank" not in first.settings
    assert "query_bank" not in ModelSystem("test-tiny").settings


def test_an_unsnapped_row_beside_the_snapping_one(tmp_path) -> None:
    """``unsnapped:MODEL`` evaluates a banked model with its queries as they are, in its
    own row beside the default; a model without a bank is refused, as are other rows."""
    import numpy as np
    import soundfile as sf

    from querysep.evaluation import evaluate, make_system

    tiny = load_model("test-tiny")
    bank = NearestTextEncoder(tiny.text_encoder, ["a dog barking", "rain"])
    TextQueriedSeparator(tiny.net, bank, tiny.metadata).save_pretrained(tmp_path / "m")
    spec = str(tmp_path / "m")
    system = make_system(f"unsnapped:{spec}")
    assert system.name == f"{spec} [unsnapped]" and system.spec == f"unsnapped:{spec}"
    assert system.separator.snap_queries is False and "query_bank" not in system.settings

    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for name in ("mix", "dog"):
        sf.write(audio / f"{name}.wav", 0.1 * rng.standard_normal(8000), 16000)
    table = tmp_path / "list.csv"
    table.write_text("mixture,target,caption\nmix,dog,a big dog barking at night\n")
    summary = evaluate(
        table, audio, [spec, f"unsnapped:{spec}"], tmp_path / "out", progress=False, baselines=False
    )
    scores = summary.scores
    assert list(scores) == [spec, f"{spec} [unsnapped]"]
    first, second = (scores[name]["sdr"] for name in scores)
    assert first != second  # the query is "a dog barking" in one row, itself in the other

    for bad, match in (
        ("unsnapped:test-tiny", "answers queries as they are already"),
        ("unsnapped:", "needs a model after the colon"),
        ("unsnapped:mixture", "not the row 'mixture'"),
        ("unsnapped:model:esc50-minilm", "write unsnapped:esc50-minilm"),
    ):
        with pytest.raises(ConfigError, match=match):
            make_system(bad)


def test_a_saved_bank_keeps_its_embeddings_and_loading_embeds_none(tmp_path, monkeypatch) -> None:
    """``save_pretrained`` writes the bank's embeddings beside the weights; loading the folder
    uses them, so a first query embeds that query only, and answers as computing them would."""
    from querysep.errors import CheckpointError
    from querysep.models.text import BANK_NAME

    tiny = load_model("test-tiny")
    texts = ["a dog barking", "rain", "a siren"]
    bank = NearestTextEncoder(tiny.text_encoder, texts)
    TextQueriedSeparator(tiny.net, bank, tiny.metadata).save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / BANK_NAME).is_file()

    embedded: list[str] = []
    inner_type = type(tiny.text_encoder)
    real = inner_type._encode
    monkeypatch.setattr(
        inner_type, "_encode", lambda self, q: (embedded.extend(q), real(self, q))[1]
    )
    loaded = load_model(str(tmp_path / "m"))
    assert loaded.text_encoder.has_embeddings  # before any query
    query = "a big dog barking at night"
    got = loaded.text_encoder.encode([query])
    assert embedded == [query]  # not the three texts
    assert loaded.text_encoder.nearest([query]) == bank.nearest([query])
    torch.testing.assert_close(got, bank.encode([query]))
    # a cache of what the config names: the model's digest is the same without it
    digest = loaded.weights_digest()
    (tmp_path / "m" / BANK_NAME).rename(tmp_path / "bank")
    without = load_model(str(tmp_path / "m"))
    assert not without.text_encoder.has_embeddings and without.weights_digest() == digest
    (tmp_path / "bank").rename(tmp_path / "m" / BANK_NAME)

    # a bank file from another save (here: other texts) is stale: computed on first use
    other = NearestTextEncoder(tiny.text_encoder, ["a cat", "wind"])
    TextQueriedSeparator(tiny.net, other, tiny.metadata).save_pretrained(tmp_path / "o")
    (tmp_path / "m" / BANK_NAME).write_bytes((tmp_path / "o" / BANK_NAME).read_bytes())
    embedded.clear()
    stale = load_model(str(tmp_path / "m"))
    assert not stale.text_encoder.has_embeddings
    torch.testing.assert_close(stale.text_encoder.encode([query]), got)
    assert sorted(embedded) == sorted([query, *texts])

    # a damaged one is refused in one line: the right marks on the wrong embeddings, or
    # no safetensors file at all
    from safetensors import safe_open
    from safetensors.torch import save_file

    TextQueriedSeparator(tiny.net, bank, tiny.metadata).save_pretrained(tmp_path / "m")
    with safe_open(str(tmp_path / "m" / BANK_NAME), framework="pt") as fh:
        marks = fh.metadata()
    save_file({"embeddings": torch.zeros(2, bank.dim)}, str(tmp_path / "m" / BANK_NAME), marks)
    with pytest.raises(CheckpointError, match="is damaged: embeddings of shape \\(2, "):
        load_model(str(tmp_path / "m"))
    (tmp_path / "m" / BANK_NAME).write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=f"cannot read .*{BANK_NAME}"):
        load_model(str(tmp_path / "m"))

    # saving a model without a bank into the folder removes the file
    tiny.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / BANK_NAME).exists()
    assert load_model(str(tmp_path / "m")).text_encoder.kind != "nearest"


class _Calibrated(HashingTextEncoder):
    """A hashing encoder that says where two of its texts stop naming one sound."""

    @property
    def far_cosine(self) -> float | None:
        return 0.5


def test_matches_give_the_text_its_cosine_and_whether_it_is_far() -> None:
    plain = NearestTextEncoder(INNER, TEXTS)
    calibrated = NearestTextEncoder(_Calibrated(64), TEXTS)
    queries = ["a dog barking loudly", "quantum physics", "a siren wailing"]
    unit = F.normalize(plain.inner.encode(TEXTS), dim=-1)
    for query, got, flagged in zip(
        queries, plain.matches(queries), calibrated.matches(queries), strict=True
    ):
        sims = F.normalize(plain.inner.encode([query]), dim=-1) @ unit.T
        assert got.text == TEXTS[int(sims.argmax())] == _nearest_by_hand(plain.inner, query)
        assert got.cosine == pytest.approx(float(sims.max()), abs=1e-6)
        assert got.far is None  # a hashing encoder has no calibrated threshold
        assert (flagged.text, flagged.far) == (got.text, got.cosine < 0.5)
    far = [m.far for m in calibrated.matches(queries)]
    assert far[2] is False and True in far  # a training text is its own match, cosine 1
    assert calibrated.matches(["a siren wailing"])[0].cosine == pytest.approx(1.0)
