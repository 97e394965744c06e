"""ResUNet configurations, shapes and behaviour beyond the upstream preset."""

from __future__ import annotations

import pytest
import torch

from querysep.errors import ConfigError
from querysep.models import ResUNet, ResUNetConfig

SMALL = dict(
    n_fft=256,
    hop_length=64,
    channels=(8, 16),
    pre_channels=8,
    downsample=((2, 2), (2, 2)),
    condition_dim=16,
)


@pytest.mark.parametrize("mask", ["complex", "magnitude"])
@pytest.mark.parametrize("film", ["all", "encoder", "decoder"])
def test_any_length_in_same_length_out(mask: str, film: str) -> None:
    net = ResUNet(ResUNetConfig(**SMALL, mask=mask, film=film)).eval()
    cond = torch.randn(2, 16)
    for length in (1, 100, 129, 4000, 4321):
        out = net(torch.randn(2, 1, length), cond)
        assert out.shape == (2, 1, length)
        assert torch.isfinite(out).all()


def test_condition_changes_the_output() -> None:
    torch.manual_seed(0)
    net = ResUNet(ResUNetConfig(**SMALL)).eval()
    mix = torch.randn(1, 1, 4000)
    a = net(mix, torch.randn(1, 16))
    b = net(mix, torch.randn(1, 16))
    assert (a - b).abs().max() > 1e-4


def test_film_placement_controls_parameters() -> None:
    enc = ResUNet(ResUNetConfig(**SMALL, film="encoder"))
    names = [n for n, _ in enc.film.named_children()]
    assert names and all(not n.startswith("decoder") for n in names)
    dec = ResUNet(ResUNetConfig(**SMALL, film="decoder"))
    assert all(n.startswith("decoder") for n, _ in dec.film.named_children())


def test_mask_bounds_output_magnitude() -> None:
    # The magnitude mask is a sigmoid: the estimate's STFT magnitude never exceeds the mixture's.
    net = ResUNet(ResUNetConfig(**SMALL, mask="magnitude")).eval()
    mix = torch.randn(1, 1, 8000)
    out = net(mix, torch.randn(1, 16))
    m_in = net.stft(mix[:, 0]).abs()
    m_out = net.stft(out[:, 0]).abs()
    assert (m_out.sum() < m_in.sum()).item()


def test_config_round_trip_and_validation() -> None:
    cfg = ResUNetConfig(**SMALL)
    again = ResUNetConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(ConfigError, match="colour: unknown key"):
        ResUNetConfig.from_dict({**cfg.to_dict(), "colour": "blue"})
    with pytest.raises(ConfigError, match=r"^n_fft: expected an integer, got 'many'$"):
        ResUNetConfig.from_dict({**cfg.to_dict(), "n_fft": "many"})
    with pytest.raises(ConfigError, match=r"^channels: expected a list, got 5$"):
        ResUNetConfig.from_dict({**cfg.to_dict(), "channels": 5})
    with pytest.raises(ConfigError, match=r"^momentum: must be > 0"):
        ResUNetConfig.from_dict({**cfg.to_dict(), "momentum": -1})
    with pytest.raises(ConfigError, match="downsample"):
        ResUNetConfig(channels=(8, 16), downsample=((2, 2),))
    with pytest.raises(ConfigError, match="16000 and 32000"):
        ResUNetConfig.resunet30(44100)


def test_bf16_autocast_runs_and_stays_close() -> None:
    net = ResUNet(ResUNetConfig(**SMALL)).eval()
    mix, cond = torch.randn(1, 1, 4000), torch.randn(1, 16)
    ref = net(mix, cond)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(mix, cond)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


@pytest.mark.parametrize("mask", ["complex", "magnitude"])
def test_reset_mask_head_gives_half_the_mixture_for_any_query(mask: str) -> None:
    torch.manual_seed(0)
    net = ResUNet(ResUNetConfig(**{**SMALL, "mask": mask})).eval()
    mix = torch.randn(1, 1, 4000)
    before = net(mix, torch.randn(1, 16))
    net.reset_mask_head()
    a, b = net(mix, torch.randn(1, 16)), net(mix, torch.randn(1, 16))
    torch.testing.assert_close(a, b)
    spec = net.stft(mix[:, 0])  # (B, T, F)
    if mask == "complex":  # the top bin gets a zero map (as upstream): no phase, so no output
        spec[..., -1] = 0
    reconstructed = net.stft.inverse(spec, 4000)[:, None]
    torch.testing.assert_close(a, 0.5 * reconstructed, atol=1e-5, rtol=1e-4)
    assert (before - a).abs().max() > 1e-3  # the random head did something else
