"""Model folders: save, load, registry, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from querysep.errors import CheckpointError, ConfigError, ModelNotFoundError
from querysep.models import HashingTextEncoder, ResUNet, ResUNetConfig, TextQueriedSeparator
from querysep.pretrained import DEFAULT_MODEL, build_test_tiny, list_models, load_model


def _model() -> TextQueriedSeparator:
    cfg = ResUNetConfig(
        n_fft=256,
        hop_length=64,
        channels=(8, 16),
        pre_channels=8,
        downsample=((2, 2), (2, 2)),
        condition_dim=24,
    )
    return TextQueriedSeparator(ResUNet(cfg), HashingTextEncoder(24), {"name": "unit"}).eval()


def test_save_load_round_trip_gives_same_output(tmp_path: Path) -> None:
    model = _model()
    for p in model.net.parameters():  # move away from the initial values
        p.data.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "m")
    assert sorted(x.name for x in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    again = load_model(str(tmp_path / "m"))
    mix = torch.randn(2, 1, 3000)
    with torch.inference_mode():
        torch.testing.assert_close(again(mix, ["a dog", "rain"]), model(mix, ["a dog", "rain"]))
    assert again.metadata["name"] == "unit"
    assert load_model(f"querysep:{tmp_path / 'm'}").sample_rate == 16000


def test_checkpoint_with_wrong_keys_is_listed(tmp_path: Path) -> None:
    model = _model()
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    state = load_file(weights)
    state.pop("base.after_conv.bias")
    state["base.surprise"] = torch.zeros(2)
    save_file(state, weights)
    with pytest.raises(CheckpointError) as info:
        load_model(str(tmp_path / "m"))
    assert "missing: base.after_conv.bias" in str(info.value)
    assert "unexpected: base.surprise" in str(info.value)


def _edit(config: dict, path: tuple[str, ...], value: object) -> dict:
    config = json.loads(json.dumps(config))
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    _model().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_model(str(tmp_path / "m"))


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("network", "config", "n_fft"), "many", "network.config.n_fft: expected an integer"),
        (("network", "config", "channels"), 5, "network.config.channels: "),
        (("network",), 5, "network: expected a mapping"),
        (("network", "config"), 5, "network.config: expected a mapping"),
        (("network", "type"), "transformer", "unknown network type 'transformer'"),
        (("network", "config", "film"), "middle", "network.config.film: must be one of"),
        (("text_encoder",), 5, "text_encoder: expected a mapping"),
        (("text_encoder", "dim"), "x", "text_encoder.dim: expected an integer"),
        (("metadata",), 5, "metadata: expected a mapping"),
        (("format_version",), "x", "format_version: expected an integer"),
        (("format_version",), None, "format_version: expected an integer"),
        (("format_version",), 2, "newer querysep"),
        (
            ("network", "config", "condition_dim"),
            32,
            "network.config.condition_dim: the network expects 32-d conditions but the text "
            "encoder gives 24-d",
        ),
        (
            ("network", "config"),
            {},  # every network setting left to its default, condition_dim too
            "network.config.condition_dim (not set: the default): the network expects 512-d",
        ),
    ],
    ids=[
        "n_fft-many",
        "channels-5",
        "network-5",
        "network.config-5",
        "network.type-unknown",
        "film-middle",
        "text_encoder-5",
        "text_encoder.dim-x",
        "metadata-5",
        "format_version-x",
        "format_version-null",
        "format_version-newer",
        "condition_dim-other",
        "network.config-empty",
    ],
)
def test_broken_config_is_a_config_error(
    tmp_path: Path, path: tuple[str, ...], value: object, match: str
) -> None:
    # Exactly ConfigError (which the CLI turns into a one-line error), never a TypeError,
    # and the message names the file and the key.
    _model().save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps(_edit(config, path, value)))
    with pytest.raises(ConfigError, match=re.escape(match)) as info:
        load_model(str(tmp_path / "m"))
    assert str(tmp_path / "m" / "config.json") in str(info.value)


def test_garbage_weights_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    _model().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(str(tmp_path / "m"))


def test_unknown_model_names_the_alternatives(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="test-tiny"):
        load_model("no-such-model")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        load_model(str(tmp_path / "file.bin"))
    with pytest.raises(ModelNotFoundError, match=r"config\.json missing"):
        load_model(str(tmp_path))


def test_condition_size_mismatch_is_rejected() -> None:
    cfg = ResUNetConfig(
        n_fft=256, hop_length=64, channels=(8,), downsample=((2, 2),), condition_dim=10
    )
    with pytest.raises(ConfigError, match="10-d conditions"):
        TextQueriedSeparator(ResUNet(cfg), HashingTextEncoder(12))


def test_test_tiny_is_deterministic_and_registered() -> None:
    names = [m.name for m in list_models()]
    assert "test-tiny" in names and names[0] == DEFAULT_MODEL
    a, b = build_test_tiny(), load_model("test-tiny")
    mix = torch.randn(1, 1, 4000)
    with torch.inference_mode():
        torch.testing.assert_close(a(mix, ["x"]), b(mix, ["x"]))


def _trained_pair(tmp_path: Path) -> tuple[TextQueriedSeparator, Path, dict[str, bytes]]:
    """A saved model folder and the bytes of its two files."""
    old = _model()
    folder = old.save_pretrained(tmp_path / "m")
    return old, folder, {p.name: p.read_bytes() for p in folder.iterdir()}


def _assert_old_pair_intact(folder: Path, old: TextQueriedSeparator, files: dict) -> None:
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # no temp file either
    again = load_model(str(folder))
    mix = torch.randn(1, 1, 2000)
    with torch.inference_mode():
        torch.testing.assert_close(again(mix, ["rain"]), old(mix, ["rain"]))


def test_failure_while_writing_the_weights_keeps_the_old_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import querysep.models.separator as separator

    old, folder, files = _trained_pair(tmp_path)

    def half_then_ctrl_c(state: dict, path: Path, metadata: dict) -> None:
        Path(path).write_bytes(b"half a safetensors file")
        raise KeyboardInterrupt

    monkeypatch.setattr(separator, "save_file", half_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        _model().save_pretrained(folder)
    _assert_old_pair_intact(folder, old, files)


def test_failure_while_writing_the_config_keeps_the_old_pair(tmp_path: Path) -> None:
    old, folder, files = _trained_pair(tmp_path)
    new = _model()
    new.metadata["unserialisable"] = object()  # json.dumps fails after the weights are written
    with pytest.raises(TypeError):
        new.save_pretrained(folder)
    _assert_old_pair_intact(folder, old, files)


def test_new_weights_with_an_old_config_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the two renames leaves new weights and the old config: never loaded."""
    import os

    _, folder, _ = _trained_pair(tmp_path)
    real_replace = os.replace
    calls: list[str] = []

    def replace_then_crash(src: str, dst: str) -> None:
        calls.append(str(dst))
        if len(calls) == 2:
            raise KeyboardInterrupt  # after model.safetensors, before config.json
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _model().save_pretrained(folder)
    monkeypatch.undo()
    assert [Path(c).name for c in calls] == ["model.safetensors", "config.json"]
    with pytest.raises(CheckpointError, match="come from different saves"):
        load_model(str(folder))


def test_model_folder_under_a_file_is_one_clear_error(tmp_path: Path) -> None:
    from querysep.errors import OutputError

    (tmp_path / "FILE").write_text("x")
    with pytest.raises(OutputError, match=r"FILE/m/model\.safetensors: .*FILE is a file"):
        _model().save_pretrained(tmp_path / "FILE" / "m")
