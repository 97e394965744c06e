"""AudioSep / DCASE-baseline checkpoints through ``load_model``: parity with upstream.

A Lightning-format checkpoint is built in the test from the fixtures' key lists (rule
weights; the CLAP audio tower and the STFT kernels as broadcast zeros) and loaded with
``load_model("audiosep:...")`` / ``load_model("dcase-baseline:...")``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from querysep import Separator, load_model
from querysep.errors import CheckpointError, ModelNotFoundError
from querysep.models.text.clap import ClapTextEncoder
from querysep.models.upstream import (
    current_upstream_options,
    load_upstream,
    read_upstream_checkpoint,
    upstream_options,
)
from querysep.precision import cpu_info
from querysep.testing.clap import tiny_roberta_tokenizer
from querysep.testing.upstream import upstream_checkpoint_state

FIXTURES = Path(__file__).parent.parent / "fixtures"
LAION_KEYS = FIXTURES / "laion_clap" / "keys_htsat_base_roberta.tsv"


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10((reference**2).sum() / ((reference - estimate) ** 2).sum()))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("roberta")
    tiny_roberta_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One AudioSep-format (32 kHz) and one baseline-format (16 kHz) checkpoint file."""
    folder = tmp_path_factory.mktemp("upstream")
    out = {}
    for tag in ("32k", "16k"):
        state = upstream_checkpoint_state(FIXTURES / "resunet30" / f"keys_{tag}.tsv", LAION_KEYS)
        path = folder / f"upstream_{tag}.ckpt"
        torch.save({"state_dict": state, "epoch": 0, "global_step": 4}, path)
        out[tag] = path
    return out


@pytest.fixture(scope="module")
def text_fixture() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / "laion_clap" / "fixture_htsat_base_roberta.npz"))


@pytest.mark.parametrize(("kind", "tag"), [("audiosep", "32k"), ("dcase-baseline", "16k")])
def test_checkpoint_reproduces_upstream(
    kind: str, tag: str, checkpoints: dict, tokenizer: Path, text_fixture: dict
) -> None:
    """Separator outputs == fixture_{tag} (1e-4) and text embeddings == LAION's (1e-4)."""
    with upstream_options(text_tokenizer=tokenizer):
        model = load_model(f"{kind}:{checkpoints[tag]}")
    data = np.load(FIXTURES / "resunet30" / f"fixture_{tag}.npz")
    assert model.sample_rate == int(data["sample_rate"])
    for case in (0, 1):
        mixture = torch.from_numpy(data[f"mixture_{case}"])[None, None]
        condition = torch.from_numpy(data[f"condition_{case}"])[None]
        with torch.inference_mode():
            out = model.net(mixture, condition)[0, 0].numpy()
        assert np.abs(out - data[f"output_{case}"]).max() <= 1e-4
    encoder = model.text_encoder
    assert isinstance(encoder, ClapTextEncoder)
    with torch.inference_mode():
        emb = encoder.embed_tokens(
            torch.from_numpy(text_fixture["input_ids"]),
            torch.from_numpy(text_fixture["attention_mask"]),
        )
    expected = torch.from_numpy(text_fixture["text_embed"])
    torch.testing.assert_close(emb, expected, atol=1e-4, rtol=0)
    assert model.metadata["name"] == kind
    assert model.metadata["precision"] == "auto"
    # queries go through the roberta tokenizer and the same tower
    assert model.encode(["a dog barking"]).shape == (1, 512)


def test_separate_clap_checkpoint_gives_the_same_encoder(
    checkpoints: dict, tokenizer: Path, tmp_path: Path
) -> None:
    """A LAION .pt given separately (--clap-checkpoint) replaces the checkpoint's copy."""
    state = torch.load(checkpoints["32k"], weights_only=True, mmap=True)["state_dict"]
    prefix = "query_encoder.model."
    laion = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    clap_pt = tmp_path / "music_speech_audioset_epoch_15_esc_89.98.pt"
    torch.save({"state_dict": laion}, clap_pt)
    no_encoder = {k: v for k, v in state.items() if not k.startswith(prefix)}
    ckpt = tmp_path / "separator-only.ckpt"
    torch.save({"state_dict": no_encoder}, ckpt)
    with pytest.raises(ModelNotFoundError, match="--clap-checkpoint"):
        load_upstream(ckpt, "audiosep", text_tokenizer=tokenizer)
    a = load_upstream(ckpt, "audiosep", text_tokenizer=tokenizer, clap_checkpoint=clap_pt)
    b = load_upstream(checkpoints["32k"], "audiosep", text_tokenizer=tokenizer)
    queries = ["a dog barking", "rain falling on a roof"]
    torch.testing.assert_close(a.encode(queries), b.encode(queries), atol=0, rtol=0)
    assert a.metadata["query_encoder"] == str(clap_pt)


def test_saved_folder_rebuilds_the_encoder(
    checkpoints: dict, tokenizer: Path, tmp_path: Path
) -> None:
    model = load_upstream(checkpoints["16k"], "dcase-baseline", text_tokenizer=tokenizer)
    model.save_pretrained(tmp_path / "exported")
    again = load_model(str(tmp_path / "exported"))
    queries = ["the cat meows loudly"]
    torch.testing.assert_close(again.encode(queries), model.encode(queries), atol=0, rtol=0)
    mix = torch.randn(1, 1, 16000)
    with torch.inference_mode():
        torch.testing.assert_close(again(mix, queries), model(mix, queries))


def test_audio_tower_and_analytic_entries_are_ignored(checkpoints: dict) -> None:
    ckpt = read_upstream_checkpoint(checkpoints["32k"], "audiosep")
    ignored = "\n".join(ckpt.ignored)
    for part in ("audio_branch.", "audio_projection.", "text_transform.", "logit_scale_a"):
        assert part in ignored
    assert ckpt.sample_rate == 32000
    assert "query_encoder.model.text_branch.embeddings.position_ids" in ckpt.query_encoder


@pytest.mark.parametrize("prefix", ["module.", "model.", "module.model."])
def test_a_wrappers_prefix_on_every_key_is_taken_off(
    checkpoints: dict, tmp_path: Path, prefix: str
) -> None:
    state = torch.load(checkpoints["32k"], weights_only=True)["state_dict"]
    path = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": {prefix + k: v for k, v in state.items()}}, path)
    # was refused as "a LAION-CLAP checkpoint (a query encoder), not a separator checkpoint"
    wrapped = read_upstream_checkpoint(path, "audiosep")
    plain = read_upstream_checkpoint(checkpoints["32k"], "audiosep")
    assert wrapped.separator.keys() == plain.separator.keys()
    assert wrapped.query_encoder.keys() == plain.query_encoder.keys()
    # a prefix on only some keys is not a wrapper's: those keys are named
    torch.save(
        {"state_dict": {"module." + k if "bn0" in k else k: v for k, v in state.items()}}, path
    )
    with pytest.raises(
        CheckpointError, match=r"unexpected keys in an AudioSep checkpoint: module\."
    ):
        read_upstream_checkpoint(path, "audiosep")


def test_a_wrapped_checkpoint_saved_as_a_folder_loads_again(
    checkpoints: dict, tokenizer: Path, tmp_path: Path
) -> None:
    """The saved folder names the .ckpt for its text tower, read again on loading: the
    LAION reader must take the wrapper's prefix off too."""
    state = torch.load(checkpoints["16k"], weights_only=True)["state_dict"]
    path = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": {"model." + k: v for k, v in state.items()}}, path)
    model = load_upstream(path, "dcase-baseline", text_tokenizer=tokenizer)
    model.save_pretrained(tmp_path / "exported")
    again = load_model(str(tmp_path / "exported"))  # was: "not a LAION-CLAP checkpoint"
    queries = ["the cat meows loudly"]
    torch.testing.assert_close(again.encode(queries), model.encode(queries), atol=0, rtol=0)


def test_a_scalar_where_bn0_holds_its_bins_is_one_line(checkpoints: dict, tmp_path: Path) -> None:
    state = torch.load(checkpoints["16k"], weights_only=True)["state_dict"]
    state["ss_model.base.bn0.weight"] = torch.tensor(1.0)
    path = tmp_path / "scalar.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(
        CheckpointError,
        match=r"an unknown ResUNet30 \(ss_model.base.bn0 has shape \(\)\), but DCASE",
    ):
        read_upstream_checkpoint(path, "dcase-baseline")  # was an IndexError


def test_messages_say_an_audiosep(tmp_path: Path) -> None:
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="is not an AudioSep separator checkpoint"):
        read_upstream_checkpoint(path, "audiosep")
    with pytest.raises(CheckpointError, match="is not a DCASE 2024 Task 9 baseline separator"):
        read_upstream_checkpoint(path, "dcase-baseline")


def test_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUERYSEP_TEXT_TOKENIZER", "/tok")
    monkeypatch.setenv("QUERYSEP_CLAP_CHECKPOINT", "/clap.pt")
    assert current_upstream_options().text_tokenizer == "/tok"
    with upstream_options(text_tokenizer="/other"):
        options = current_upstream_options()
    assert (options.text_tokenizer, options.clap_checkpoint) == ("/other", "/clap.pt")


def test_wrong_rate_names_the_right_kind(checkpoints: dict, tokenizer: Path) -> None:
    with pytest.raises(CheckpointError, match=r"32 kHz ResUNet30.*load it as audiosep:"):
        load_upstream(checkpoints["32k"], "dcase-baseline", text_tokenizer=tokenizer)


def test_precision_defaults(checkpoints: dict, tokenizer: Path) -> None:
    """auto for upstream kinds (bf16 only where native), 32 when asked; 32 for others."""
    with upstream_options(text_tokenizer=tokenizer):
        model = load_model(f"dcase-baseline:{checkpoints['16k']}")
    fast = Separator(model)
    assert fast.precision == ("bf16-mixed" if cpu_info().fast_bf16 else "32")
    assert fast.channels_last == (fast.precision == "bf16-mixed")
    assert Separator(model, precision="32", channels_last=False).precision == "32"
    assert Separator("test-tiny").precision == "32"


@pytest.mark.skipif(not cpu_info().fast_bf16, reason="bf16 is emulated (slow) on this CPU")
@pytest.mark.parametrize(("kind", "tag"), [("audiosep", "32k"), ("dcase-baseline", "16k")])
def test_fast_path_agrees_with_float32(
    kind: str, tag: str, checkpoints: dict, tokenizer: Path
) -> None:
    """The default (bf16 + channels-last) agrees with float32 to >= 30 dB SDR.

    With the fixtures' rule weights on 16 kHz input (System 2 resamples it for AudioSep);
    measured about 32 dB (benchmarks/upstream_speed.py prints the figure for a real run).
    """
    from querysep.testing import synth

    with upstream_options(text_tokenizer=tokenizer):
        model = load_model(f"{kind}:{checkpoints[tag]}")
    audio = synth.scene(1.5, 16000, seed=3)
    exact = Separator(model, precision="32", channels_last=False)
    ref = exact.separate_tensor(audio, 16000, "a dog barking")[0, 0].numpy()
    fast = Separator(model, precision="bf16-mixed")
    est = fast.separate_tensor(audio, 16000, "a dog barking")[0, 0].numpy()
    assert sdr(ref, est) >= 30.0
