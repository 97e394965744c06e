"""A transformers ClapModel folder as an audio-text model (``hf:``), offline, on tiny models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from querysep.audio.io import resample
from querysep.clap import load_clap
from querysep.clap.base import repeat_pad
from querysep.clap.hf import ClapFrontEnd, HFClap
from querysep.errors import ModelNotFoundError
from querysep.testing.clap import (
    tiny_clap_folder,
    tiny_clap_model,
    tiny_feature_extractor,
    tiny_roberta_tokenizer,
)

SR = 48000
TEXTS = ["a dog barking", "rain falling on a roof", "the cat meows loudly"]


def _noise(seconds: float, seed: int = 0, rate: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32)


def _tones(seconds: float, rate: int) -> np.ndarray:
    """A few tones and a decaying envelope below 8 kHz: the same signal at any rate >= 16k."""
    t = np.arange(int(seconds * rate)) / rate
    x = sum(
        a * np.sin(2 * np.pi * f * t + p)
        for a, f, p in [(0.3, 220, 0), (0.2, 1500, 1), (0.1, 5000, 2)]
    )
    return (x * np.exp(-0.3 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_clap_folder(tmp_path_factory.mktemp("clap") / "tiny")


@pytest.fixture(scope="module")
def clap(folder: Path) -> HFClap:
    model = load_clap(str(folder))
    assert isinstance(model, HFClap)
    return model


@pytest.mark.parametrize("fusion", [False, True])
@pytest.mark.parametrize("seconds", [3.3, 10.0])
def test_front_end_equals_feature_extractor(fusion: bool, seconds: float) -> None:
    """Torch features == ``ClapFeatureExtractor`` to 1e-4 dB (measured: under 1e-5 dB).

    Both compute in float64; the extractor stores its STFT as complex64, hence the residue.
    A clip under 10 s goes through the base class's repeat-padding, which must be the
    extractor's ``repeatpad``.
    """
    extractor = tiny_feature_extractor(fusion=fusion)
    x = _noise(seconds)
    x[:2000] = 0.0  # digital silence reaches the -100 dB floor
    expected = extractor(x, sampling_rate=SR, return_tensors="pt")["input_features"]
    front = ClapFrontEnd.from_feature_extractor(extractor, fusion=fusion)
    ours = front(torch.from_numpy(repeat_pad(x, 10 * SR))[None])
    assert ours.shape == expected.shape == (1, 4 if fusion else 1, 1001, 64)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_embeddings_equal_the_model_own_path(folder: Path, clap: HFClap) -> None:
    """Extractor + ``ClapModel.get_*_features`` give what ``embed_*`` gives (1e-5)."""
    from transformers import ClapFeatureExtractor, ClapModel

    model = ClapModel.from_pretrained(folder).eval()
    extractor = ClapFeatureExtractor.from_pretrained(folder)
    clips = [_noise(4.0, 1), _noise(10.0, 2)]
    feats = extractor(clips, sampling_rate=SR, return_tensors="pt")["input_features"]
    tok = clap.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        audio = model.get_audio_features(input_features=feats)
        text = model.get_text_features(
            input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
        )
    audio = torch.nn.functional.normalize(getattr(audio, "pooler_output", audio), dim=-1)
    text = torch.nn.functional.normalize(getattr(text, "pooler_output", text), dim=-1)
    torch.testing.assert_close(
        clap.embed_audio(clips, SR, normalize_level=False), audio, atol=1e-5, rtol=0
    )
    torch.testing.assert_close(clap.embed_text(TEXTS), text, atol=1e-5, rtol=0)


def test_saved_folder_reloads_identical(folder: Path, tmp_path: Path) -> None:
    """In memory, ``load_clap(folder)`` and ``load_clap("hf:" + folder)``: the same numbers."""
    memory = HFClap(tiny_clap_model(0), tiny_feature_extractor(), tiny_roberta_tokenizer())
    clips = [_noise(2.5, 3), _noise(12.0, 4)]
    expected_audio = memory.embed_audio(clips, SR)
    expected_text = memory.embed_text(TEXTS)
    for spec in (str(folder), f"hf:{folder}"):
        loaded = load_clap(spec)
        assert loaded.sample_rate == SR and loaded.window_samples == 10 * SR and loaded.dim == 16
        torch.testing.assert_close(loaded.embed_audio(clips, SR), expected_audio, atol=0, rtol=0)
        torch.testing.assert_close(loaded.embed_text(TEXTS), expected_text, atol=0, rtol=0)


def test_16k_input_is_resampled_not_misread(clap: HFClap) -> None:
    """16 kHz audio == the same signal at 48 kHz, to 2e-3 in embedding (cosine > 0.999 9).

    The 48 kHz rendering and soxr's 16 -> 48 kHz resampling differ only near the ends and by
    resampler ripple; reading the 16 kHz samples as if they were 48 kHz (the mistake this
    guards against) moves the log-mel by tens of dB and the embedding far more.
    """
    x16, x48 = _tones(6.0, 16000), _tones(6.0, SR)
    e16 = clap.embed_audio(x16, 16000)
    e48 = clap.embed_audio(x48, SR)
    torch.testing.assert_close(e16, e48, atol=2e-3, rtol=0)
    assert float(e16 @ e48.T) > 0.9999
    front16 = clap.features(torch.from_numpy(repeat_pad(resample(x16, 16000, SR), 10 * SR))[None])
    front48 = clap.features(torch.from_numpy(repeat_pad(x48, 10 * SR))[None])
    wrong = clap.features(torch.from_numpy(repeat_pad(x16, 10 * SR))[None])
    right_gap = (front16 - front48)[..., 5:-5, :].abs().mean()
    wrong_gap = (wrong - front48)[..., 5:-5, :].abs().mean()
    assert right_gap < 0.5 and wrong_gap > 10.0


def test_score_does_not_change_with_gain(clap: HFClap) -> None:
    x = _noise(5.0, 5)
    scores = [clap.score(g * x, SR, TEXTS) for g in (1.0, 0.05, 7.0)]
    for other in scores[1:]:
        torch.testing.assert_close(other, scores[0], atol=1e-5, rtol=0)


def test_batched_equals_one_by_one(clap: HFClap) -> None:
    clips = [_noise(3.0, 6), _noise(10.0, 7), _noise(15.0, 8)]
    batch = clap.embed_audio(clips, SR, batch_size=8)
    singles = torch.cat([clap.embed_audio(c, SR, batch_size=1) for c in clips])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=0)
    texts = clap.embed_text(TEXTS)
    one = torch.cat([clap.embed_text(t) for t in TEXTS])
    torch.testing.assert_close(texts, one, atol=1e-5, rtol=0)


def test_fusion_model_uses_the_global_mel_deterministically(tmp_path: Path) -> None:
    """A fusion model gets the 4-channel input with is_longer False, every time."""
    folder = tiny_clap_folder(tmp_path / "fused", fusion=True)
    clap = load_clap(str(folder))
    assert isinstance(clap, HFClap) and clap.fusion
    x = _noise(10.0, 9)
    feats = clap.features(torch.from_numpy(x)[None])
    assert feats.shape == (1, 4, 1001, 64)
    first = clap.embed_audio(x, SR, normalize_level=False)
    torch.testing.assert_close(
        clap.embed_audio(x, SR, normalize_level=False), first, atol=0, rtol=0
    )
    with torch.inference_mode():
        ref = clap.model.get_audio_features(
            input_features=feats, is_longer=torch.zeros(1, 1, dtype=torch.bool)
        )
    ref = torch.nn.functional.normalize(getattr(ref, "pooler_output", ref), dim=-1)
    torch.testing.assert_close(first, ref, atol=1e-5, rtol=0)


def test_token_type_ids_never_reach_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BERT-style tokenizer returns token_type_ids; only ids and mask are passed on."""
    folder = tiny_clap_folder(tmp_path / "bert", tokenizer="bert")
    clap = load_clap(str(folder))
    assert "token_type_ids" in clap.tokenizer(TEXTS[:1])
    seen: list[dict] = []
    original = clap.model.text_model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(clap.model.text_model, "forward", spy)
    emb = clap.embed_text(TEXTS)
    assert seen and all(kw.get("token_type_ids") is None for kw in seen)
    tok = clap.tokenizer(TEXTS, padding=True, return_tensors="pt")
    expected = clap.embed_tokens(tok["input_ids"], tok["attention_mask"])
    torch.testing.assert_close(emb, expected, atol=1e-6, rtol=0)


def test_text_options_never_reach_the_audio_front_end(
    clap: HFClap, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The processor pitfall: its text kwargs leak into the extractor; we never use either."""
    from transformers import ClapFeatureExtractor, ClapProcessor

    extractor = tiny_feature_extractor()
    x = _noise(4.0, 10)
    # the pitfall itself: a text max_length given to the processor crops the audio to 8 samples
    processor = ClapProcessor(feature_extractor=extractor, tokenizer=clap.tokenizer)
    leaked = processor(
        text=TEXTS[:1], audio=[x], sampling_rate=SR, max_length=8, return_tensors="pt"
    )
    assert leaked["input_features"].shape[2] != 1001

    def refuse(*args, **kwargs):
        raise AssertionError("the processor / feature extractor must not be called")

    monkeypatch.setattr(ClapProcessor, "__call__", refuse)
    monkeypatch.setattr(ClapFeatureExtractor, "__call__", refuse)
    before = clap.embed_audio(x, SR)
    clap_short = clap.max_length
    try:
        clap.max_length = 4
        short = clap.embed_text(["a dog barking loudly in the rain on a roof"])
    finally:
        clap.max_length = clap_short
    assert short.shape == (1, 16)
    torch.testing.assert_close(clap.embed_audio(x, SR), before, atol=0, rtol=0)


def _one_line_error(spec: str, match: str) -> None:
    with pytest.raises(ModelNotFoundError, match=match) as info:
        load_clap(spec)
    assert "\n" not in str(info.value)


def test_missing_pieces_are_named(folder: Path, tmp_path: Path) -> None:
    _one_line_error(f"hf:{tmp_path / 'nothing'}", "not found")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "tokenizer.json").unlink()
    _one_line_error(str(broken), "no tokenizer files")
    (broken / "preprocessor_config.json").unlink()
    _one_line_error(f"hf:{broken}", "preprocessor_config.json")
    (broken / "model.safetensors").unlink()
    _one_line_error(f"hf:{broken}", "no weights")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    _one_line_error(f"hf:{other}", "model_type is bert, not clap")
    _one_line_error(str(other), "not an audio-text model folder")


def test_hub_id_from_the_local_cache_only(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-clap"
    commit = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    for spec in ("hf:someone/tiny-clap", "someone/tiny-clap"):
        assert load_clap(spec).dim == 16
    _one_line_error("hf:someone/not-cached", "not a model in the local Hugging Face cache|neither")


def test_weights_that_leave_parts_random_are_refused(folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from querysep.errors import CheckpointError

    weights = load_file(folder / "model.safetensors")
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    kept = {k: v for k, v in weights.items() if not k.startswith("text_projection.")}
    save_file(kept, partial / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"4 weight\(s\) the model needs are missing"):
        load_clap(str(partial))
    # buffers transformers recomputes may be left out (older saves lack them)
    lean = tmp_path / "lean"
    shutil.copytree(folder, lean)
    dropped = [k for k in weights if k.endswith(("position_ids", "token_type_ids"))]
    assert dropped
    save_file({k: v for k, v in weights.items() if k not in dropped}, lean / "model.safetensors")
    load_clap(str(lean))
    cut = tmp_path / "cut"
    shutil.copytree(folder, cut)
    data = (folder / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot load the CLAP model in"):
        load_clap(str(cut))
    wrong = tmp_path / "wrong"
    shutil.copytree(folder, wrong)
    config = json.loads((wrong / "config.json").read_text())
    config["projection_dim"] = 2 * config["projection_dim"]
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError):
        load_clap(str(wrong))


class _RunsCode:
    """Unpickling this would write ``path``: it must never happen."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.write_text, (Path(self.path), "executed"))


def test_a_weights_file_that_needs_pickled_code_is_refused_without_torchs_advice(
    folder: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from querysep.errors import CheckpointError

    evil = tmp_path / "evil"
    shutil.copytree(folder, evil)
    weights = load_file(evil / "model.safetensors")
    (evil / "model.safetensors").unlink()
    flag = tmp_path / "side-effect"
    torch.save({**weights, "hook": _RunsCode(str(flag))}, evil / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="need pickled code to load") as info:
        load_clap(str(evil))
    # torch's own message advised re-running with weights_only=False
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    assert not flag.exists()


def test_a_folder_whose_tokenizer_outgrows_its_text_model_is_refused(tmp_path: Path) -> None:
    from querysep.errors import CheckpointError

    folder = tmp_path / "small-vocab"
    tiny_clap_model(0, vocab_size=100).save_pretrained(folder)  # the tokenizer has 300 tokens
    tiny_feature_extractor().save_pretrained(folder)
    tiny_roberta_tokenizer(folder)
    with pytest.raises(CheckpointError, match="300 tokens but the text model embeds only 100"):
        load_clap(str(folder))  # was: an IndexError at the first query


def test_torchs_refusal_is_found_inside_the_error_older_transformers_raise() -> None:
    import pickle

    from querysep.clap.hf import _needs_pickled_code

    inner = pickle.UnpicklingError("Weights only load failed ... `weights_only` ...")
    outer = OSError("Unable to load weights from pytorch checkpoint file")
    outer.__cause__ = inner
    assert _needs_pickled_code(outer) and not _needs_pickled_code(OSError("no such file"))
