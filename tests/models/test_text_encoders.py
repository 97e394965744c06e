"""Text encoders: one interface, offline, deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from querysep.errors import ConfigError, ModelNotFoundError, QueryError
from querysep.models.text import (
    MAX_QUERY_CHARS,
    ClapTextEncoder,
    HashingTextEncoder,
    MiniLMTextEncoder,
    build_text_encoder,
    validate_queries,
)


def test_validate_queries_normalises_and_rejects() -> None:
    assert validate_queries("  a   dog\tbarking ") == ["a dog barking"]
    for bad in ("", "   \n\t", [], ["ok", " "]):
        with pytest.raises(QueryError):
            validate_queries(bad)
    with pytest.raises(QueryError, match="too long"):
        validate_queries("x" * (MAX_QUERY_CHARS + 1))
    assert validate_queries("y" * MAX_QUERY_CHARS) == ["y" * MAX_QUERY_CHARS]
    for absurd in ("!!!!", "\U0001f415", "-- ?", "\u3002"):  # punctuation, an emoji alone
        with pytest.raises(QueryError, match="has no letter or digit"):
            validate_queries(["a dog", absurd])
    with pytest.raises(QueryError, match=r"control character \(U\+0000\)"):
        validate_queries("a dog\x00")
    # words in any script, digits, and emoji beside words are queries
    assert validate_queries(["un chien qui aboie", "\u72ac", "2 dogs", "a dog \U0001f415"]) == [
        "un chien qui aboie",
        "\u72ac",
        "2 dogs",
        "a dog \U0001f415",
    ]


def test_hashing_encoder_is_deterministic_and_word_sensitive() -> None:
    a, b = HashingTextEncoder(64), HashingTextEncoder(64)
    x = a.encode(["a dog barking", "dog barks", "heavy rain on a roof"])
    torch.testing.assert_close(x, b.encode(["a dog barking", "dog barks", "heavy rain on a roof"]))
    assert x.shape == (3, 64)
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(3))
    sims = x @ x.T
    assert sims[0, 1] > sims[0, 2]  # shared words -> closer
    rebuilt = build_text_encoder(a.to_config())
    torch.testing.assert_close(rebuilt.encode("a dog barking")[0], x[0])


def test_unknown_encoder_kind() -> None:
    with pytest.raises(ConfigError, match="unknown text encoder kind"):
        build_text_encoder({"kind": "nope"})


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_minilm_leaves_transformers_progress_bars_as_they_were(enabled: bool) -> None:
    # They are the whole process's: loading once turned them off for good.
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    try:
        (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
        MiniLMTextEncoder()
        assert hf_logging.is_progress_bar_enabled() == enabled
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def test_loading_minilm_leaves_huggingface_hub_progress_bars_off() -> None:
    # transformers' switch turns the hub's bars back on too, after the caller turned them off
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    was, hub_was = hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled()
    try:
        hf_logging.enable_progress_bar()
        hub_utils.disable_progress_bars()
        MiniLMTextEncoder()
        assert hub_utils.are_progress_bars_disabled()
        assert hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # and the other way round: the hub's stay on
        hub_utils.enable_progress_bars()
        MiniLMTextEncoder()
        assert not hub_utils.are_progress_bars_disabled()
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()
        (hub_utils.disable_progress_bars if hub_was else hub_utils.enable_progress_bars)()


def test_minilm_offline_embeddings_are_semantic(minilm: MiniLMTextEncoder) -> None:
    emb = minilm.encode(["a dog barking", "barking of a dog", "a church bell ringing"])
    assert emb.shape == (3, 384) and minilm.dim == 384
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3), atol=1e-5, rtol=0)
    sims = emb @ emb.T
    assert sims[0, 1] > 0.7 > sims[0, 2]
    # cached second call returns the same values
    torch.testing.assert_close(minilm.encode(["barking of a dog"])[0], emb[1])


def test_minilm_batch_equals_single(minilm: MiniLMTextEncoder) -> None:
    minilm.clear_cache()
    batch = minilm.encode(["rain", "a cat meowing loudly in the kitchen"])
    minilm.clear_cache()
    single = minilm.encode(["a cat meowing loudly in the kitchen"])
    torch.testing.assert_close(batch[1], single[0], atol=1e-5, rtol=1e-4)


def _tiny_clap_folder(folder: Path) -> Path:
    """A random-weight ClapModel with a tiny BPE tokenizer, saved like a real one."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import ClapConfig, ClapModel, PreTrainedTokenizerFast

    text_cfg = dict(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        projection_dim=16,
    )
    audio_cfg = dict(
        hidden_size=32,
        patch_embeds_hidden_size=8,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        window_size=4,
        spec_size=32,
        num_mel_bins=16,
        patch_stride=(4, 4),
        patch_size=4,
        projection_dim=16,
        enable_fusion=False,
    )
    torch.manual_seed(0)
    ClapModel(
        ClapConfig(text_config=text_cfg, audio_config=audio_cfg, projection_dim=16)
    ).save_pretrained(folder)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=100, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    tok.train_from_iterator(
        ["a dog barking", "rain falling on a roof", "a bell rings"] * 10, trainer
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    ).save_pretrained(folder)
    return folder


def test_clap_text_tower_from_local_folder(tmp_path: Path) -> None:
    from transformers import ClapModel

    folder = _tiny_clap_folder(tmp_path / "clap")
    enc = ClapTextEncoder(str(folder))
    assert enc.dim == 16
    emb = enc.encode(["a dog barking", "rain falling on a roof"])
    assert emb.shape == (2, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    # the same numbers as the full model's own text path
    full = ClapModel.from_pretrained(folder).eval()
    tok = enc.tokenizer(
        ["a dog barking", "rain falling on a roof"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        ref = full.get_text_features(**tok)
    ref = getattr(ref, "pooler_output", ref)
    torch.testing.assert_close(
        emb, torch.nn.functional.normalize(ref, dim=-1), atol=1e-5, rtol=1e-4
    )
    assert build_text_encoder(enc.to_config()).encode("a dog barking").shape == (1, 16)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("{tmp}/nothing-here", r"^CLAP text model folder not found: .*nothing-here"),
        ("weights/audioldm-s-full-v2", r"^CLAP text model: weights/audioldm-s-full-v2 is neither"),
        ("", r"^CLAP text model folder not found: ''"),
        ("ldm", r"^CLAP text model 'ldm': an AudioLDM folder with text_encoder/ but no tokenizer/"),
        ("notok", r"^CLAP text model 'notok': no tokenizer files in notok \(tokenizer.json, or"),
        ("noconf", r"^CLAP text model 'noconf': no config.json in noconf$"),
    ],
)
def test_a_clap_text_model_that_is_not_here_fails_before_any_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, match: str
) -> None:
    """Given a path that does not exist, transformers' from_pretrained looked the name up on
    the network (a long DNS wait offline) despite local_files_only, then answered in its own
    words; the name is now resolved locally first and from_pretrained is never reached."""
    import transformers

    def no_lookup(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"from_pretrained reached with {args}")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_lookup)
    monkeypatch.chdir(tmp_path)  # the relative specs name nothing here but an AudioLDM half
    (tmp_path / "ldm" / "text_encoder").mkdir(parents=True)
    (tmp_path / "ldm" / "text_encoder" / "config.json").write_text("{}")
    (tmp_path / "notok").mkdir()
    (tmp_path / "notok" / "config.json").write_text("{}")
    (tmp_path / "noconf").mkdir()
    (tmp_path / "noconf" / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match=match):
        ClapTextEncoder(spec.format(tmp=tmp_path))


def test_precomputed_table_round_trip(tmp_path: Path) -> None:
    from querysep.models.text import PrecomputedTextEncoder, save_embedding_table

    source = HashingTextEncoder(16)
    path = save_embedding_table(source, ["a dog", "rain", "a dog"], tmp_path / "t.safetensors")
    table = PrecomputedTextEncoder(str(path))
    assert table.dim == 16
    torch.testing.assert_close(table.encode(["rain", "a dog"]), source.encode(["rain", "a dog"]))
    torch.testing.assert_close(table.source_encoder().encode("rain"), source.encode("rain"))
    with pytest.raises(QueryError, match="not in the precomputed"):
        table.encode("thunder")
    with pytest.raises(ModelNotFoundError):
        PrecomputedTextEncoder(str(tmp_path / "none.safetensors"))


def test_a_model_saved_with_a_relative_text_model_path_loads_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text model named relative to the working folder (as a training config may name it)
    is recorded absolute, so the exported model loads from anywhere; a hub id stays as given,
    and so does an embedding table (made for training on another machine)."""
    from querysep.hub import absolute_if_local
    from querysep.models import ResUNet, ResUNetConfig, TextQueriedSeparator
    from querysep.models.text import PrecomputedTextEncoder, save_embedding_table

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(work)
    _tiny_clap_folder(work / "clap")
    save_embedding_table(HashingTextEncoder(16), ["a dog", "rain"], "table.safetensors")
    encoder = ClapTextEncoder("clap")
    cfg = ResUNetConfig(
        n_fft=256,
        hop_length=64,
        channels=(4, 4),
        pre_channels=4,
        downsample=((2, 2), (2, 2)),
        condition_dim=encoder.dim,
    )
    monkeypatch.chdir(elsewhere)  # the path is resolved where it was given, not where saved
    TextQueriedSeparator(ResUNet(cfg), encoder).eval().save_pretrained(work / "model")
    loaded = TextQueriedSeparator.from_pretrained(work / "model")
    torch.testing.assert_close(loaded.text_encoder.encode("rain"), encoder.encode("rain"))
    monkeypatch.chdir(work)
    assert PrecomputedTextEncoder("table.safetensors").to_config()["path"] == "table.safetensors"
    assert absolute_if_local("laion/clap-htsat-unfused") == "laion/clap-htsat-unfused"
    assert absolute_if_local("clap") == str(work / "clap")


def test_a_minilm_folder_may_be_given_from_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from querysep.models.text.minilm import _bundled_path

    (tmp_path / "mini").symlink_to(_bundled_path(), target_is_directory=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    encoder = MiniLMTextEncoder("~/mini")  # as a training config may name it
    torch.testing.assert_close(encoder.encode(["a dog"]), MiniLMTextEncoder().encode(["a dog"]))


def test_a_clap_text_folder_whose_text_weights_are_missing_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file, save_file

    from querysep.errors import CheckpointError

    folder = _tiny_clap_folder(tmp_path / "clap")
    weights = load_file(folder / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("text_model.encoder.")},
        folder / "model.safetensors",
    )
    capsys.readouterr()
    with pytest.raises(CheckpointError, match=r"weight\(s\) the model needs are missing"):
        ClapTextEncoder(str(folder))  # was: loaded, the text tower at random weights
    shape = dict(weights)
    shape["text_projection.linear1.weight"] = torch.zeros(3, 3)
    save_file(shape, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"have another shape \(e.g. text_projection"):
        ClapTextEncoder(str(folder))
    captured = capsys.readouterr()
    assert "LOAD REPORT" not in captured.out + captured.err  # one line, not transformers' table
