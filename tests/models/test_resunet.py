"""ResUNet configurations, shapes and behaviour beyond the upstream preset."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

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


@pytest.mark.parametrize("mask", ["complex", "magnitude"])
def test_mask_magnitude_is_bounded_by_the_sigmoid(
    mask: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The network multiplies the mixture's STFT magnitude by sigmoid(map), a mask in (0, 1),
    # before the inverse STFT. Capture the masked spectrogram at the inverse STFT and check
    # |masked| / |mixture| bin by bin. (After resynthesis the estimate's STFT magnitude can
    # exceed the mixture's, since a masked spectrogram is not the STFT of any signal, so the
    # bound is checked on the mask itself.)
    torch.manual_seed(0)
    net = ResUNet(ResUNetConfig(**SMALL, mask=mask)).eval()
    captured: list[torch.Tensor] = []
    inverse = net.stft.inverse

    def spy(spec: torch.Tensor, length: int) -> torch.Tensor:
        captured.append(spec.detach().clone())
        return inverse(spec, length)

    monkeypatch.setattr(net.stft, "inverse", spy)
    mix = 0.1 * torch.randn(2, 1, 8000)  # quiet enough that the random net's mask spreads out
    with torch.no_grad():
        net(mix, 3 * torch.randn(2, 16))
    (masked,) = captured
    spec = net.stft(mix[:, 0])
    ratio = masked.abs() / spec.abs()
    assert ratio.shape == spec.shape
    assert ratio.min() >= 0.0 and ratio.max() <= 1.0 + 1e-5
    # The top bin gets a zero map: sigmoid(0) = 0.5, and with the complex mask no phase
    # (tanh(0) = 0 for both parts), so silence.
    top = 0.5 if mask == "magnitude" else 0.0
    assert ratio[..., -1].sub(top).abs().max() < 1e-5
    inner = ratio[..., :-1]
    assert inner.std() > 0.1 and inner.min() < 0.1 and inner.max() > 0.9  # spread over (0, 1)
    if mask == "magnitude":  # the mixture's phase is kept
        torch.testing.assert_close(masked, ratio * spec, atol=1e-5, rtol=1e-4)


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


def test_training_under_bf16_autocast_runs_every_layer_in_bf16() -> None:
    """In training the trunk and both 1x1 ends compute in bf16 under autocast.

    A float32 FiLM bias (or a float32 first level, kept so by its identity shortcut) made the
    element-wise passes and their backward run in float32: 1.35x the CPU training step. The
    input BatchNorm on the magnitudes stays float32; gradients reach the FiLM projections.
    """
    torch.manual_seed(0)
    net = ResUNet(ResUNetConfig(**SMALL)).train()
    dtypes: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            dtypes[name] = output.dtype

        return hook

    for name, module in net.base.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.BatchNorm2d)):
            module.register_forward_hook(record(name))
    mix, cond = torch.randn(2, 1, 4000), torch.randn(2, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(mix, cond)
    out.square().mean().backward()
    assert out.dtype == torch.float32
    assert dtypes.pop("bn0") == torch.float32
    assert {"pre_conv", "after_conv", "encoder_block1.conv_block1.bn1"} <= dtypes.keys()
    assert set(dtypes.values()) == {torch.bfloat16}, dtypes
    film_grads = [p.grad for n, p in net.named_parameters() if n.startswith("film.")]
    assert film_grads and all(g is not None and g.abs().sum() > 0 for g in film_grads)


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


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("beta", ["tensor", "float"])
def test_fused_inference_activation_equals_the_plain_one(memory_format, beta) -> None:
    from querysep.models.resunet import film_activation

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(6).eval()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.2, 3)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 7, 9).to(memory_format=memory_format)
    b = torch.randn(2, 6, 1, 1) if beta == "tensor" else 0.3
    plain = F.leaky_relu(bn(x) + b, negative_slope=0.01)
    with torch.inference_mode():
        fused = film_activation(bn, x, b)
    assert fused.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    # under bf16 autocast, bf16 activations stay bf16 and close to the float32 result
    with torch.inference_mode():
        low = film_activation(bn, x.to(torch.bfloat16), b)
    assert low.dtype == torch.bfloat16
    error = (low.float() - plain).norm() / plain.norm()
    assert error < 1e-2  # > 40 dB: bf16 rounding of the input, the affine and the output
    # training, or a gradient, takes the plain path (BatchNorm's batch statistics)
    bn.train()
    torch.testing.assert_close(
        film_activation(bn, x, b), F.leaky_relu(bn(x) + b, negative_slope=0.01)
    )


def test_channels_last_trunk_runs_every_level_channels_last() -> None:
    """A channels-last network gets channels-last activations from its first level on.

    The one-channel spectrogram leaves pre_conv's output in NCHW; left so, the largest level
    converted layouts in every convolution, add and cat.
    """
    torch.manual_seed(0)
    net = ResUNet(ResUNetConfig(**SMALL)).eval()
    mix, cond = torch.randn(1, 1, 4000), torch.randn(1, 16)
    with torch.inference_mode():
        ref = net(mix, cond)
    seen: list[bool] = []

    def record(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(args[0].is_contiguous(memory_format=torch.channels_last))

    for module in net.base.modules():
        if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3):
            module.register_forward_pre_hook(record)
    with torch.inference_mode():
        plain = net(mix, cond)
    assert len(seen) > 0 and not any(seen)  # the plain network stays NCHW
    seen.clear()
    net.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        fast = net(mix, cond)
    assert len(seen) > 0 and all(seen)
    torch.testing.assert_close(plain, ref)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)  # layout only


def _randomise_batchnorm(net: ResUNet, seed: int) -> None:
    """Non-trivial running statistics and affine parameters, as a trained network has."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(generator=gen)


@pytest.mark.parametrize("blocks", [2, (1, 3)])
def test_grown_network_computes_the_same_function_and_then_learns(blocks) -> None:
    torch.manual_seed(0)
    small = ResUNet(ResUNetConfig(**SMALL))
    _randomise_batchnorm(small, seed=1)
    grown = small.eval().grown(blocks)
    assert not grown.training
    added = sum(p.numel() for p in grown.parameters()) - sum(p.numel() for p in small.parameters())
    assert added > 0
    x, cond = torch.randn(3, 1, 3000), torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(grown(x, cond), small(x, cond), rtol=0, atol=0)
    small.train()
    grown.train()  # batch statistics: still the same output
    torch.testing.assert_close(grown(x, cond), small(x, cond), rtol=0, atol=0)
    # the zeroed convolutions receive gradients, so training moves the new blocks
    target = torch.randn(3, 1, 3000)
    F.mse_loss(grown(x, cond), target).backward()
    new_convs = [
        m.conv2 for name, m in grown.base.named_modules() if name.split(".")[-1].startswith("extra")
    ]
    assert new_convs and all(c.weight.grad.abs().sum() > 0 for c in new_convs)
    with torch.no_grad():
        for c in new_convs:
            c.weight -= 0.1 * c.weight.grad
    grown.eval()
    small.eval()
    with torch.no_grad():
        assert (grown(x, cond) - small(x, cond)).abs().max() > 1e-4


def test_blocks_per_level_config() -> None:
    cfg = ResUNetConfig(**SMALL, blocks=[1, 2])
    assert cfg.level_blocks() == (1, 2)
    assert ResUNetConfig.from_dict(cfg.to_dict()) == cfg
    net = ResUNet(cfg)
    # level 2 (16 channels) has one extra block in its encoder, the bottleneck and the
    # decoder block that returns to 16 channels; level 1 has none
    with_extra = {n for n, m in net.base.named_children() if hasattr(m, "extra1")}
    assert with_extra == {"encoder_block2", "conv_block3a", "decoder_block1"}
    film = dict(net.film.named_children())
    assert {f"{n}->extra1->beta{k}" for n in with_extra for k in (1, 2)} <= set(film)
    assert not any("extra2" in path for path in film)
    with pytest.raises(ConfigError, match="3 block counts for 2 levels"):
        ResUNetConfig(**SMALL, blocks=[1, 2, 2])
    with pytest.raises(ConfigError, match="blocks"):
        ResUNetConfig.from_dict({**cfg.to_dict(), "blocks": 0})
    with pytest.raises(ConfigError, match=r"can only grow, not become \[1, 1\]"):
        ResUNet(cfg).grown(1)


def test_complex_mask_gradients_stay_finite_where_the_phase_maps_are_zero() -> None:
    """Both phase maps exactly 0 (a zeroed head; in bf16 training an exact cancellation)."""
    torch.manual_seed(0)
    net = ResUNet(ResUNetConfig(**{**SMALL, "mask": "complex"}))
    with torch.no_grad():
        net.base.after_conv.weight.zero_()
        net.base.after_conv.bias.zero_()
    mix = torch.randn(2, 1, 4000)
    (net(mix, torch.randn(2, 16)) - mix).pow(2).sum().backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    assert grads["base.after_conv.weight"].abs().sum() > 0
    assert all(torch.isfinite(g).all() for g in grads.values())
