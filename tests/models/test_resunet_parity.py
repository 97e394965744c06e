"""The ResUNet30 preset reproduces upstream outputs (DCASE T9 at 16 kHz, AudioSep at 32 kHz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from querysep.errors import CheckpointError
from querysep.models import ResUNet, ResUNetConfig
from querysep.testing.weights import rule_weight

FIXTURES = Path(__file__).parent.parent / "fixtures" / "resunet30"


def upstream_state_dict(tag: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """An upstream-shaped state dict (STFT kernels included, as zeros) with the rule's weights."""
    state = {}
    for line in (FIXTURES / f"keys_{tag}.tsv").read_text().splitlines():
        key, shape_txt, dtype = line.split("\t")
        shape = tuple(int(v) for v in shape_txt.strip("()").split(",") if v.strip())
        if "stft." in key:
            state[prefix + key] = torch.zeros(shape)  # must be ignored, not used
        elif dtype == "int64":
            state[prefix + key] = torch.tensor(0)
        else:
            state[prefix + key] = rule_weight(key, shape)
    return state


@pytest.mark.parametrize(("tag", "sample_rate"), [("16k", 16000), ("32k", 32000)])
@pytest.mark.parametrize("prefix", ["", "ss_model."])
def test_preset_matches_upstream_outputs(tag: str, sample_rate: int, prefix: str) -> None:
    net = ResUNet(ResUNetConfig.resunet30(sample_rate)).eval()
    net.load_upstream_state_dict(upstream_state_dict(tag, prefix))
    data = np.load(FIXTURES / f"fixture_{tag}.npz")
    assert int(data["sample_rate"]) == sample_rate
    for case in (0, 1):  # exactly 2 s, and 2 s minus 1337 samples
        mixture = torch.from_numpy(data[f"mixture_{case}"])[None, None]
        condition = torch.from_numpy(data[f"condition_{case}"])[None]
        with torch.inference_mode():
            out = net(mixture, condition)[0, 0].numpy()
        expected = data[f"output_{case}"]
        assert out.shape == expected.shape
        assert np.abs(out - expected).max() <= 1e-4


def test_batched_output_equals_single_items() -> None:
    net = ResUNet(ResUNetConfig.resunet30(16000)).eval()
    net.load_upstream_state_dict(upstream_state_dict("16k"))
    data = np.load(FIXTURES / "fixture_16k.npz")
    n = data["mixture_1"].shape[0]
    mix = torch.stack([torch.from_numpy(data[f"mixture_{i}"][:n]) for i in (0, 1)])[:, None]
    cond = torch.stack([torch.from_numpy(data[f"condition_{i}"]) for i in (0, 1)])
    with torch.inference_mode():
        batch = net(mix, cond)
        singles = torch.cat([net(mix[i : i + 1], cond[i : i + 1]) for i in (0, 1)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-4)


def test_mismatched_checkpoint_lists_keys() -> None:
    net = ResUNet(ResUNetConfig.resunet30(16000))
    state = upstream_state_dict("16k")
    del state["base.after_conv.weight"]
    state["base.extra_layer.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        net.load_upstream_state_dict(state)
    message = str(info.value)
    assert "missing: base.after_conv.weight" in message
    assert "unexpected: base.extra_layer.weight" in message


def test_wrong_rate_checkpoint_reports_shapes() -> None:
    net = ResUNet(ResUNetConfig.resunet30(16000))
    with pytest.raises(CheckpointError, match=r"shape: base.bn0.bias \(1025,\) != \(513,\)"):
        net.load_upstream_state_dict(upstream_state_dict("32k"))


def test_unused_upstream_parameters_are_frozen() -> None:
    net = ResUNet(ResUNetConfig.resunet30(16000))
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert "base.decoder_block1.bn2.weight" in frozen
    assert "film.decoder_block1->beta2.weight" in frozen
    mix, cond = torch.randn(1, 1, 8000), torch.randn(1, 512)
    net(mix, cond).pow(2).mean().backward()
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)
