"""LAION-CLAP checkpoints converted to transformers: parity with upstream, checks, CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from querysep.clap import laion as laion_module
from querysep.clap import load_clap
from querysep.clap.hf import HFClap
from querysep.clap.laion import (
    convert_text_branch,
    laion_clap_model,
    laion_feature_extractor,
    load_laion_state_dict,
    strip_laion_prefix,
)
from querysep.cli import app
from querysep.errors import CheckpointError, ModelNotFoundError
from querysep.testing.clap import (
    laion_state_dict_from_clap,
    tiny_clap_model,
    tiny_roberta_tokenizer,
)
from querysep.testing.weights import rule_weight

FIXTURES = Path(__file__).parent.parent / "fixtures" / "laion_clap"
SR = 48000
TEXTS = ["a dog barking", "rain falling on a roof"]
runner = CliRunner()


def upstream_state_dict() -> dict[str, torch.Tensor]:
    """The fixture's upstream-shaped state dict: rule weights; analytic entries as zeros."""
    state = {}
    for line in (FIXTURES / "keys_htsat_base_roberta.tsv").read_text().splitlines():
        key, shape_txt, dtype, rule = line.split("\t")
        shape = tuple(int(v) for v in shape_txt.strip("()").split(",") if v.strip())
        if rule == "analytic" or dtype == "int64":  # must be ignored / recomputed
            kind = torch.int64 if dtype == "int64" else torch.float32
            state[key] = torch.zeros(shape, dtype=kind)
        else:
            state[key] = rule_weight(key, shape)
    return state


@pytest.fixture(scope="module")
def base() -> tuple[HFClap, object]:
    """HTSAT-base + RoBERTa-base (~200M parameters), converted once for the module."""
    model, conv = laion_clap_model(upstream_state_dict())
    return HFClap(model, laion_feature_extractor(), None), conv


@pytest.fixture(scope="module")
def fixture_data() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / "fixture_htsat_base_roberta.npz"))


def test_base_text_matches_upstream(base: tuple[HFClap, object], fixture_data: dict) -> None:
    """Text embeddings == LAION's ``get_text_embedding`` to 1e-5 (measured 2e-7).

    Same float32 operations in the same order (RoBERTa with LayerNorm eps 1e-5, pooler,
    Linear-ReLU-Linear projection), so only summation-order rounding remains.
    """
    clap, _ = base
    emb = clap.embed_tokens(
        torch.from_numpy(fixture_data["input_ids"]),
        torch.from_numpy(fixture_data["attention_mask"]),
    )
    torch.testing.assert_close(emb, torch.from_numpy(fixture_data["text_embed"]), atol=1e-5, rtol=0)


def test_base_audio_matches_upstream(base: tuple[HFClap, object], fixture_data: dict) -> None:
    """Audio embeddings == LAION's ``get_audio_embedding`` to 1e-5 (measured 5e-8).

    The two fixture clips embed at cosine 0.9998 (their embeddings differ by at most 3e-3
    per coordinate), so 1e-4 would not tell a wrong front end from a right one; the
    difference between the two clips' embeddings is checked to 1e-5 as well. Upstream
    computes the log-mel in float32 (torchlibrosa conv STFT), we in float64; the residue is
    far below the tolerance.
    """
    clap, _ = base
    emb = clap.embed_audio(fixture_data["waveform_48k"], SR, normalize_level=False)
    expected = torch.from_numpy(fixture_data["audio_embed"])
    torch.testing.assert_close(emb, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(emb[0] - emb[1], expected[0] - expected[1], atol=1e-5, rtol=0)


def test_base_detected_and_analytic_buffers_ignored(base: tuple[HFClap, object]) -> None:
    _, conv = base
    assert conv.audio == "HTSAT-base"
    assert conv.text == "RoBERTa (12 layers, hidden 768)"
    ignored = "\n".join(conv.ignored)
    for part in (
        "stft.conv_real",
        "melW",
        "attn_mask",
        "relative_position_index",
        "tscam_conv",
        "audio_branch.head.",
        "audio_transform.",
        "text_transform.",
    ):
        assert part in ignored


def _tiny_pair(**config: object) -> tuple[object, dict[str, torch.Tensor]]:
    model = tiny_clap_model(1, **config)
    return model, laion_state_dict_from_clap(model)


def _same_embeddings(a: HFClap, b: HFClap) -> None:
    clip = (0.1 * np.random.default_rng(0).standard_normal(SR * 4)).astype(np.float32)
    torch.testing.assert_close(a.embed_audio(clip, SR), b.embed_audio(clip, SR), atol=1e-6, rtol=0)
    ids = torch.tensor([[0, 5, 9, 40, 2, 1], [0, 7, 2, 1, 1, 1]])
    mask = (ids != 1).long()
    torch.testing.assert_close(
        a.embed_tokens(ids, mask), b.embed_tokens(ids, mask), atol=1e-6, rtol=0
    )


def test_round_trip_of_a_tiny_model() -> None:
    """transformers -> LAION names -> converted again: the same embeddings."""
    model, state = _tiny_pair()
    converted, conv = laion_clap_model(state)
    assert conv.audio.startswith("HTSAT (width 8")
    extractor = laion_feature_extractor()
    _same_embeddings(HFClap(model, extractor, None), HFClap(converted, extractor, None))
    assert float(converted.logit_scale_a) == pytest.approx(3.0)


def test_htsat_tiny_detected() -> None:
    """HTSAT-tiny's shapes (width 96, depths 2-2-6-2, heads 4-8-16-32) are recognised."""
    from transformers import ClapConfig, ClapModel

    config = tiny_clap_model(0).config.to_dict()
    audio = {
        "hidden_size": 768,
        "patch_embeds_hidden_size": 96,
        "depths": [2, 2, 6, 2],
        "num_attention_heads": [4, 8, 16, 32],
    }
    torch.manual_seed(2)
    model = ClapModel(
        ClapConfig(text_config=config["text_config"], audio_config=audio, projection_dim=16)
    ).eval()
    converted, conv = laion_clap_model(laion_state_dict_from_clap(model))
    assert conv.audio == "HTSAT-tiny"
    assert converted.config.audio_config.num_attention_heads == [4, 8, 16, 32]
    got = converted.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(got[key], value), key


@pytest.mark.parametrize(
    ("prefix", "wrapped"),
    [("", False), ("module.", True), ("module.", False), ("query_encoder.model.", True)],
)
def test_prefixes_and_wrapping(tmp_path: Path, prefix: str, wrapped: bool) -> None:
    """Bare, under ``state_dict``, ``module.`` or AudioSep's ``query_encoder.model.``."""
    model, state = _tiny_pair()
    state = {prefix + k: v for k, v in state.items()}
    if prefix == "query_encoder.model.":  # AudioSep: the separator's weights beside it
        state["ss_model.base.encoder_block1.conv_block1.conv1.weight"] = torch.zeros(2, 2)
    path = tmp_path / "clap.pt"
    torch.save({"state_dict": state, "epoch": 3} if wrapped else state, path)
    loaded, found = load_laion_state_dict(path)
    assert found == prefix
    assert "text_branch.embeddings.position_ids" in loaded  # dropped by the conversion
    converted, _ = laion_clap_model(loaded)
    expected = model.state_dict()
    got = converted.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_text_branch_on_its_own_from_an_audiosep_checkpoint() -> None:
    """``convert_text_branch`` reads AudioSep's query encoder keys and loads strictly."""
    from transformers import ClapTextConfig, ClapTextModelWithProjection

    model, state = _tiny_pair()
    audiosep = {"query_encoder.model." + k: v for k, v in state.items()}
    audiosep["ss_model.base.bn0.weight"] = torch.ones(3)
    config, text_state = convert_text_branch(audiosep, prefix="query_encoder.model.")
    assert config["projection_dim"] == 16 and config["num_hidden_layers"] == 2
    assert all(k.startswith(("text_model.", "text_projection.")) for k in text_state)
    tower = ClapTextModelWithProjection(ClapTextConfig(**config)).eval()
    result = tower.load_state_dict(text_state, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) <= {
        "text_model.embeddings.position_ids",
        "text_model.embeddings.token_type_ids",
    }
    ids = torch.tensor([[0, 5, 9, 2]])
    with torch.inference_mode():
        ours = tower(input_ids=ids, attention_mask=torch.ones_like(ids)).text_embeds
        ref = model.get_text_features(input_ids=ids, attention_mask=torch.ones_like(ids))
    ref = getattr(ref, "pooler_output", ref)
    torch.testing.assert_close(
        torch.nn.functional.normalize(ours, dim=-1),
        torch.nn.functional.normalize(ref, dim=-1),
        atol=1e-6,
        rtol=0,
    )


SENTINEL_RUNS: list[str] = []


def _sentinel(path: str) -> str:
    """Would run if the checkpoint were unpickled with code execution allowed."""
    Path(path).write_text("executed")
    SENTINEL_RUNS.append(path)
    return path


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (_sentinel, (self.path,))


def test_pickled_code_is_refused_never_run(tmp_path: Path) -> None:
    _, state = _tiny_pair()
    flag = tmp_path / "side-effect"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": state, "hook": _Payload(str(flag))}, path)
    with pytest.raises(CheckpointError, match="pickled code") as info:
        load_laion_state_dict(path)
    assert "\n" not in str(info.value)
    assert not flag.exists() and not SENTINEL_RUNS


def _resunet_like() -> dict[str, torch.Tensor]:
    lines = (FIXTURES.parent / "resunet30" / "keys_16k.tsv").read_text().splitlines()
    return {"ss_model." + line.split("\t")[0]: torch.zeros(1) for line in lines[:40]}


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"state_dict": None}, "expected a dict of weights"),
        ({"foo": torch.zeros(1), "bar": torch.ones(2)}, "not a LAION-CLAP checkpoint.*foo"),
        ([torch.zeros(1)], "expected a dict of weights"),
        # keys under the branches, but not the ones looked for: named (it said there were no
        # audio_branch./text_branch. weights while listing some)
        (
            {"audio_branch.x": torch.zeros(1), "text_branch.y": torch.ones(1)},
            r"neither audio_branch\.patch_embed\.proj\.weight nor "
            r"text_branch\.embeddings\.word_embeddings\.weight.*audio_branch\.x",
        ),
    ],
)
def test_wrong_kind_of_file(obj: object, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        strip_laion_prefix(obj)


def test_separator_checkpoint_is_not_clap(tmp_path: Path) -> None:
    path = tmp_path / "resunet.ckpt"
    torch.save({"state_dict": _resunet_like()}, path)
    with pytest.raises(CheckpointError, match=r"not a LAION-CLAP checkpoint.*ss_model\.") as info:
        load_laion_state_dict(path)
    assert "\n" not in str(info.value)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_laion_state_dict(path)


def test_missing_extra_and_wrong_shape_keys_are_listed() -> None:
    _, state = _tiny_pair()
    missing = dict(state)
    del missing["audio_branch.layers.0.blocks.1.attn.qkv.weight"]
    del missing["text_branch.pooler.dense.bias"]
    with pytest.raises(CheckpointError, match="missing keys") as info:
        laion_clap_model(missing)
    text = str(info.value)
    assert "audio_branch.layers.0.blocks.1.attn.qkv.weight" in text
    assert "text_branch.pooler.dense.bias" in text and "\n" not in text

    extra = dict(state)
    extra["audio_branch.layers.0.blocks.0.attn.extra.weight"] = torch.zeros(2)
    extra["something_else"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"unexpected keys.*something_else"):
        laion_clap_model(extra)
    del extra["something_else"]
    with pytest.raises(
        CheckpointError, match=r"unexpected keys: audio_branch\.layers\.0\.blocks\.0\.attn\.extra"
    ):
        laion_clap_model(extra)

    wrong = dict(state)
    wrong["text_branch.pooler.dense.weight"] = torch.zeros(64, 63)
    with pytest.raises(
        CheckpointError, match=r"wrong shapes: text_branch\.pooler\.dense\.weight \(64, 63\)"
    ):
        laion_clap_model(wrong)

    fused = dict(state)
    fused["audio_branch.patch_embed.fusion_model.local_att.0.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match="feature-fusion"):
        laion_clap_model(fused)


# --- files, the laion: kind and the CLI ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    model, state = _tiny_pair()
    path = tmp_path_factory.mktemp("ckpt") / "630k-tiny.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    return path, model


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("roberta")
    tiny_roberta_tokenizer(folder)
    return folder


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "empty-hub-cache"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


def _cache_roberta(cache: Path, tokenizer_dir: Path) -> None:
    commit = "1" * 40
    repo = cache / "models--FacebookAI--roberta-base"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for item in tokenizer_dir.iterdir():
        (snapshot / item.name).write_bytes(item.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


@pytest.mark.parametrize("option", ["--tokenizer", "--text-tokenizer"])  # as elsewhere
def test_cli_convert_writes_a_loadable_folder(
    tiny_checkpoint: tuple[Path, object], tokenizer_dir: Path, tmp_path: Path, option: str
) -> None:
    from querysep.models.text.clap import ClapTextEncoder

    path, model = tiny_checkpoint
    out = tmp_path / "converted"
    result = runner.invoke(
        app, ["clap", "convert", str(path), str(out), option, str(tokenizer_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout
    info = json.loads((out / "querysep_clap.json").read_text())
    import hashlib

    assert info["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["source"]["file"] == "630k-tiny.pt" and info["source"]["key_prefix"] == "module."
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()
    loaded = load_clap(str(out))
    assert loaded.describe()["converted_from"]["sha256"] == info["source"]["sha256"]
    memory = HFClap(model, laion_feature_extractor(), tiny_roberta_tokenizer())
    _same_embeddings(memory, loaded)
    torch.testing.assert_close(
        loaded.embed_text(TEXTS), memory.embed_text(TEXTS), atol=1e-6, rtol=0
    )
    # the separator's CLAP text encoder reads the same folder
    encoder = ClapTextEncoder(str(out))
    torch.testing.assert_close(encoder.encode(TEXTS), memory.embed_text(TEXTS), atol=1e-5, rtol=0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_convert_without_tokenizer_says_what_to_copy(
    tiny_checkpoint: tuple[Path, object], tmp_path: Path, empty_hf_cache: Path
) -> None:
    path, _ = tiny_checkpoint
    out = tmp_path / "no-tokenizer"
    result = runner.invoke(app, ["clap", "convert", str(path), str(out)])
    assert result.exit_code == 0, result.output
    note = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(note) == 1 and "vocab.json, merges.txt" in note[0]
    with pytest.raises(
        ModelNotFoundError, match=r"no tokenizer files.*vocab\.json, merges\.txt"
    ) as info:
        load_clap(str(out))
    assert "\n" not in str(info.value)


def test_cli_convert_finds_the_cached_tokenizer(
    tiny_checkpoint: tuple[Path, object], tokenizer_dir: Path, tmp_path: Path, empty_hf_cache: Path
) -> None:
    path, _ = tiny_checkpoint
    _cache_roberta(empty_hf_cache, tokenizer_dir)
    out = tmp_path / "cached"
    result = runner.invoke(app, ["clap", "convert", str(path), str(out)])
    assert result.exit_code == 0, result.output
    assert not result.stderr.strip()
    assert load_clap(str(out)).embed_text(TEXTS).shape == (2, 16)


def test_failed_convert_leaves_nothing(tmp_path: Path, tokenizer_dir: Path) -> None:
    bad = tmp_path / "resunet.ckpt"
    torch.save({"state_dict": _resunet_like()}, bad)
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(
        app, ["clap", "convert", str(bad), str(out), "--tokenizer", str(tokenizer_dir)]
    )
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("querysep: error:") and "LAION-CLAP" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_convert_refuses_a_non_empty_outdir_unless_overwrite(
    tiny_checkpoint: tuple[Path, object], tokenizer_dir: Path, tmp_path: Path
) -> None:
    path, _ = tiny_checkpoint
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["clap", "convert", str(path), str(out), "--tokenizer", str(tokenizer_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_laion_kind_converts_in_memory(
    tiny_checkpoint: tuple[Path, object],
    tokenizer_dir: Path,
    empty_hf_cache: Path,
) -> None:
    path, model = tiny_checkpoint
    with pytest.raises(ModelNotFoundError, match="roberta-base tokenizer") as info:
        load_clap(f"laion:{path}")
    assert "\n" not in str(info.value) and "QUERYSEP_TEXT_TOKENIZER=DIR" in str(info.value)
    # the tokenizer from the environment, as for audiosep: specs (was: no way to give one)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("QUERYSEP_TEXT_TOKENIZER", str(tokenizer_dir))
        from_env = load_clap(f"laion:{path}")
    _same_embeddings(HFClap(model, laion_feature_extractor(), None), from_env)
    _cache_roberta(empty_hf_cache, tokenizer_dir)
    clap = load_clap(f"laion:{path}")
    assert clap.describe()["audio"].startswith("HTSAT")
    _same_embeddings(HFClap(model, laion_feature_extractor(), None), clap)
    direct = laion_module.load_laion_clap(path, tokenizer=tokenizer_dir)
    torch.testing.assert_close(direct.embed_text(TEXTS), clap.embed_text(TEXTS), atol=0, rtol=0)
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_clap(f"laion:{path.parent / 'missing.pt'}")
    assert os.path.exists(path)


@pytest.mark.parametrize(
    "key",
    [
        "text_branch.embeddings.word_embeddings.weight",
        "text_branch.embeddings.position_embeddings.weight",
        "text_branch.encoder.layer.0.intermediate.dense.weight",
        "text_projection.0.weight",
        "audio_branch.patch_embed.proj.weight",
        "audio_branch.layers.0.blocks.0.attn.relative_position_bias_table",
        "audio_branch.layers.0.blocks.0.mlp.fc1.weight",
        "audio_branch.layers.0.blocks.0.attn.qkv.weight",
        "audio_branch.bn0.weight",
        "audio_projection.0.weight",
    ],
)
@pytest.mark.parametrize("shape", [(), (3, 3, 3, 3, 3)])
def test_a_weight_the_size_is_read_from_with_too_few_or_many_dims(
    key: str, shape: tuple[int, ...]
) -> None:
    """The weights whose shapes give the model's sizes are checked before they are read: a
    0-d or 5-d tensor in their place is a one-line CheckpointError naming the key."""
    _, state = _tiny_pair()
    state[key] = torch.zeros(shape)
    with pytest.raises(CheckpointError, match=re.escape(key)) as info:
        laion_clap_model(state)
    assert "\n" not in str(info.value)


def test_nan_weights_are_refused_naming_them() -> None:
    _, state = _tiny_pair()
    state["text_projection.2.weight"] = torch.full_like(state["text_projection.2.weight"], np.nan)
    state["audio_branch.bn0.bias"] = state["audio_branch.bn0.bias"].clone()
    state["audio_branch.bn0.bias"][0] = np.inf
    with pytest.raises(CheckpointError, match="NaN or infinite weights") as info:
        laion_clap_model(state)
    assert "text_projection.2.weight" in str(info.value)
    assert "audio_branch.bn0.bias" in str(info.value) and "\n" not in str(info.value)


def test_a_text_model_smaller_than_its_tokenizer_is_refused_on_loading(
    tmp_path: Path, tokenizer_dir: Path
) -> None:
    """A LAION checkpoint whose text model embeds fewer tokens than roberta-base's tokenizer
    has (a BERT-based one) failed at the first query with an IndexError."""
    from querysep.models.text.clap import ClapTextEncoder

    _, state = _tiny_pair(vocab_size=100)  # the tiny tokenizer has 300 tokens
    path = tmp_path / "small-vocab.pt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match="300 tokens but the text model embeds only 100"):
        laion_module.load_laion_clap(path, tokenizer=tokenizer_dir)
    with pytest.raises(CheckpointError, match="do not belong together"):
        ClapTextEncoder(laion_checkpoint=str(path), tokenizer=str(tokenizer_dir))
    result = runner.invoke(
        app,
        ["clap", "convert", str(path), str(tmp_path / "out"), "--tokenizer", str(tokenizer_dir)],
    )
    assert result.exit_code == 2 and "do not belong together" in result.stderr
    assert not (tmp_path / "out").exists()


def test_convert_into_the_current_folder_is_refused_before_any_work(
    tiny_checkpoint: tuple[Path, object],
    tokenizer_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, _ = tiny_checkpoint
    here = tmp_path / "here"
    (here / "inside").mkdir(parents=True)
    for cwd, outdir in ((here, "."), (here / "inside", "..")):
        monkeypatch.chdir(cwd)
        result = runner.invoke(
            app, ["clap", "convert", str(path), outdir, "--tokenizer", str(tokenizer_dir)]
        )
        assert result.exit_code == 2, result.output  # was a ValueError traceback, exit 1
        assert "it is the current folder (or holds it)" in result.stderr
    assert sorted(p.name for p in here.iterdir()) == ["inside"]
