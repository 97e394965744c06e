"""Text-conditioned ResUNet that predicts a mask on the STFT of the mixture.

This is the separator of the DCASE 2024 Task 9 baseline and of AudioSep (their
``ResUNet30``): a residual U-Net over the magnitude spectrogram whose every residual block
receives an additive, condition-dependent bias before each activation (FiLM with shift only),
and whose output is a bounded magnitude mask plus a phase rotation. The same code builds
smaller networks for CPU use from :class:`ResUNetConfig`.

Module and parameter names follow the upstream layout (``base.encoder_block1.conv_block1.bn1``,
``film.encoder_block1->conv_block1->beta1``), so upstream state dicts load by name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..schema import validate_dataclass
from .stft import STFT

__all__ = ["ResUNet", "ResUNetConfig"]

FilmPlacement = Literal["all", "encoder", "decoder"]
MaskType = Literal["complex", "magnitude"]
PositiveInt = Annotated[int, Field(ge=1)]


@dataclass
class ResUNetConfig:
    """Constructor arguments of :class:`ResUNet`.

    Attributes:
        sample_rate: Rate the network expects, in Hz.
        n_fft: FFT size of the front end.
        hop_length: STFT hop in samples.
        channels: Output channels of each encoder level; the decoder mirrors them.
        pre_channels: Channels of the 1x1 convolution before the first level.
        downsample: (time, freq) pooling factor after each encoder level.
        kernel_size: Square kernel of every residual convolution.
        blocks: Residual blocks per level, one number for all levels or one per level
            (upstream: 1). Level ``i``'s encoder block and the decoder block that returns to
            its width get ``blocks[i]``, the bottleneck gets the last level's. The blocks after
            the first (``extra1``, ``extra2``...) keep the level's width and have their own
            FiLM biases; :meth:`ResUNet.grown` adds them to a trained network without changing
            its output. Deep levels are cheap: their maps are small.
        condition_dim: Size of the query embedding fed to FiLM.
        film: Which blocks receive the query: every block, only the encoder side
            (encoder and bottleneck), or only the decoder side.
        mask: ``complex`` = bounded magnitude mask plus phase rotation (upstream);
            ``magnitude`` = magnitude mask only, keeping the mixture phase (cheaper).
        momentum: Batch-norm momentum.
        upstream_keys: Also create the two parameter groups that upstream defines but never
            uses (the decoder blocks' ``bn2`` and their second FiLM bias), so upstream state
            dicts load strictly. They are frozen, so they never receive gradients.
    """

    sample_rate: PositiveInt = 16000
    n_fft: PositiveInt = 1024
    hop_length: PositiveInt = 160
    channels: Sequence[PositiveInt] = (32, 64, 128, 256, 384, 384)
    pre_channels: PositiveInt = 32
    downsample: Sequence[Sequence[PositiveInt]] = ((2, 2), (2, 2), (2, 2), (2, 2), (2, 2), (1, 2))
    kernel_size: PositiveInt = 3
    blocks: PositiveInt | Sequence[PositiveInt] = 1
    condition_dim: PositiveInt = 512
    film: FilmPlacement = "all"
    mask: MaskType = "complex"
    momentum: Annotated[float, Field(gt=0, le=1)] = 0.01
    upstream_keys: bool = False

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.downsample = tuple(tuple(int(v) for v in d) for d in self.downsample)
        if isinstance(self.blocks, int):
            self.blocks = int(self.blocks)
        else:
            self.blocks = tuple(int(b) for b in self.blocks)
            if len(self.blocks) != len(self.channels):
                raise ConfigError(
                    f"ResUNetConfig: {len(self.blocks)} block counts for {len(self.channels)} "
                    "levels; give one number, or one per level"
                )
            if min(self.blocks) < 1:
                raise ConfigError("ResUNetConfig: every level needs at least 1 block")
        if len(self.channels) != len(self.downsample):
            raise ConfigError(
                f"ResUNetConfig: {len(self.channels)} channel levels but "
                f"{len(self.downsample)} downsample factors; give one factor per level"
            )
        if any(len(d) != 2 or min(d) < 1 for d in self.downsample):
            raise ConfigError("ResUNetConfig: each downsample factor is a (time, freq) pair >= 1")
        if self.film not in ("all", "encoder", "decoder"):
            raise ConfigError(
                f"ResUNetConfig: film must be all, encoder or decoder, not {self.film!r}"
            )
        if self.mask not in ("complex", "magnitude"):
            raise ConfigError(
                f"ResUNetConfig: mask must be complex or magnitude, not {self.mask!r}"
            )
        if self.n_fft < 16 or not 1 <= self.hop_length <= self.n_fft // 2:
            # a longer hop leaves the Hann windows' overlap-add near zero between frames,
            # and the inverse STFT divides by it (65x the input's peak at 15/16 n_fft)
            raise ConfigError(
                "ResUNetConfig: need n_fft >= 16 and 1 <= hop_length <= n_fft / 2, "
                f"got {self.n_fft}/{self.hop_length}"
            )
        if self.kernel_size % 2 != 1:
            raise ConfigError("ResUNetConfig: kernel_size must be odd")

    def level_blocks(self) -> tuple[int, ...]:
        """Residual blocks of each level, one entry per level."""
        if isinstance(self.blocks, int):
            return (self.blocks,) * len(self.channels)
        return tuple(self.blocks)

    @classmethod
    def resunet30(cls, sample_rate: int = 16000, condition_dim: int = 512) -> ResUNetConfig:
        """The ResUNet30 of the DCASE 2024 T9 baseline (16 kHz) or AudioSep (32 kHz).

        Args:
            sample_rate: 16000 (n_fft 1024, hop 160) or 32000 (n_fft 2048, hop 320).
            condition_dim: Query embedding size (512 for the CLAP text tower).
        """
        if sample_rate == 16000:
            n_fft, hop = 1024, 160
        elif sample_rate == 32000:
            n_fft, hop = 2048, 320
        else:
            raise ConfigError(f"ResUNet30 exists at 16000 and 32000 Hz, not {sample_rate}")
        return cls(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop,
            condition_dim=condition_dim,
            upstream_keys=True,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        out["downsample"] = [list(d) for d in self.downsample]
        if not isinstance(self.blocks, int):
            out["blocks"] = list(self.blocks)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResUNetConfig:
        """Build from plain data, checking every field's type and range.

        Raises:
            ConfigError: Not a mapping, an unknown field, or a wrongly typed or out-of-range
                value (the message names the field, the value and what was expected).
        """
        return validate_dataclass(cls, data)


def film_activation(
    bn: nn.BatchNorm2d, x: torch.Tensor, beta: torch.Tensor | float
) -> torch.Tensor:
    """``leaky_relu(bn(x) + beta)``, the pre-activation of every convolution.

    In inference (an eval-mode affine BatchNorm, no gradient) the normalisation and the FiLM
    bias are folded into one per-channel scale and shift, computed in float32 and then cast
    to ``x``'s dtype (bf16 where the activations are bf16 under autocast), applied in a single
    ``addcmul`` that keeps ``x``'s dtype and memory layout, and the activation runs in place.
    On a CPU with native bf16 these element-wise passes, not the convolutions, dominated the
    bf16 forward (``benchmarks/README.md``, System 2). Training takes the plain path, with the
    bias in the activations' dtype.
    """
    if (
        bn.training
        or torch.is_grad_enabled()
        or bn.running_var is None
        or bn.weight is None
        or x.dtype == torch.float64
    ):
        h = bn(x)
        if isinstance(beta, torch.Tensor):
            beta = beta.to(h.dtype)  # a float32 bias would promote bf16 activations
        return F.leaky_relu(h + beta, negative_slope=0.01)
    scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
    shift = (bn.bias.float() - bn.running_mean.float() * scale)[None, :, None, None] + beta
    out = torch.addcmul(shift.to(x.dtype), x, scale[None, :, None, None].to(x.dtype))
    return F.leaky_relu_(out, negative_slope=0.01)


class ConvBlockRes(nn.Module):
    """Two pre-activation 3x3 convolutions with a residual path; FiLM biases before each."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, momentum: float):
        super().__init__()
        pad = kernel_size // 2
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=momentum)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=momentum)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1)
            if in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor, beta1: torch.Tensor | float, beta2: torch.Tensor | float):
        h = self.conv1(film_activation(self.bn1, x, beta1))
        h = self.conv2(film_activation(self.bn2, h, beta2))
        return (self.shortcut(x) if self.shortcut is not None else x) + h


def _add_extra_blocks(
    module: nn.Module, channels: int, kernel_size: int, momentum: float, count: int
) -> int:
    """Give ``module`` ``count`` residual blocks ``extra1``... of ``channels`` in and out."""
    for j in range(count):
        module.add_module(f"extra{j + 1}", ConvBlockRes(channels, channels, kernel_size, momentum))
    return count


def _run_extra_blocks(module: nn.Module, count: int, h: torch.Tensor, betas: Mapping[str, Any]):
    for j in range(1, count + 1):
        block = getattr(module, f"extra{j}")
        h = block(h, betas[f"extra{j}->beta1"], betas[f"extra{j}->beta2"])
    return h


class EncoderBlock(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, pool, momentum, blocks=1
    ):
        super().__init__()
        self.conv_block1 = ConvBlockRes(in_channels, out_channels, kernel_size, momentum)
        self.num_extra = _add_extra_blocks(self, out_channels, kernel_size, momentum, blocks - 1)
        self.pool = tuple(pool)

    def forward(self, x: torch.Tensor, betas: Mapping[str, torch.Tensor | float]):
        h = self.conv_block1(x, betas["conv_block1->beta1"], betas["conv_block1->beta2"])
        h = _run_extra_blocks(self, self.num_extra, h, betas)
        pooled = F.avg_pool2d(h, kernel_size=self.pool) if self.pool != (1, 1) else h
        return pooled, h


class DecoderBlock(nn.Module):
    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride,
        momentum,
        upstream_keys: bool,
        blocks: int = 1,
    ) -> None:
        super().__init__()
        stride = tuple(stride)
        self.conv1 = nn.ConvTranspose2d(
            in_channels, out_channels, stride, stride=stride, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=momentum)
        self.conv_block2 = ConvBlockRes(out_channels * 2, out_channels, kernel_size, momentum)
        self.num_extra = _add_extra_blocks(self, out_channels, kernel_size, momentum, blocks - 1)
        if upstream_keys:  # defined but unused upstream; kept only so their checkpoints load
            self.bn2 = nn.BatchNorm2d(in_channels, momentum=momentum)
            self.bn2.requires_grad_(False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, betas: Mapping[str, Any]):
        h = self.conv1(film_activation(self.bn1, x, betas["beta1"]))
        if not torch.is_grad_enabled():  # inference: one dtype for the cat (no promotion)
            skip = skip.to(h.dtype)
        h = torch.cat((h, skip), dim=1)
        h = self.conv_block2(h, betas["conv_block2->beta1"], betas["conv_block2->beta2"])
        return _run_extra_blocks(self, self.num_extra, h, betas)


class _Base(nn.Module):
    """The U-Net proper, named like upstream's ``ResUNet30_Base``."""

    def __init__(self, config: ResUNetConfig) -> None:
        super().__init__()
        c = config
        k = c.kernel_size
        self.bn0 = nn.BatchNorm2d(c.n_fft // 2 + 1, momentum=c.momentum)
        self.pre_conv = nn.Conv2d(1, c.pre_channels, kernel_size=1)
        depth = len(c.channels)
        ins = (c.pre_channels, *c.channels[:-1])
        blocks = c.level_blocks()
        for i in range(depth):
            block = EncoderBlock(ins[i], c.channels[i], k, c.downsample[i], c.momentum, blocks[i])
            self.add_module(f"encoder_block{i + 1}", block)
        self.add_module(
            f"conv_block{depth + 1}a",
            EncoderBlock(c.channels[-1], c.channels[-1], k, (1, 1), c.momentum, blocks[-1]),
        )
        outs = tuple(reversed(c.channels))  # each decoder level returns to its skip's width
        cur = c.channels[-1]
        for i in range(depth):
            level = depth - 1 - i
            block = DecoderBlock(
                cur, outs[i], k, c.downsample[level], c.momentum, c.upstream_keys, blocks[level]
            )
            self.add_module(f"decoder_block{i + 1}", block)
            cur = outs[i]
        self.num_mask_maps = 3 if c.mask == "complex" else 1
        self.after_conv = nn.Conv2d(cur, self.num_mask_maps, kernel_size=1)


class ResUNet(nn.Module):
    """Query-conditioned mask-estimation U-Net on the STFT.

    Args:
        config: Architecture; see :class:`ResUNetConfig`.
    """

    def __init__(self, config: ResUNetConfig) -> None:
        super().__init__()
        self.config = config
        self.stft = STFT(config.n_fft, config.hop_length)
        self.base = _Base(config)
        self.depth = len(config.channels)
        self.time_ratio = math.prod(d[0] for d in config.downsample)
        self.freq_ratio = math.prod(d[1] for d in config.downsample)
        self.film = nn.Module()
        self._film_paths: list[str] = []
        for path, width, used in self._film_layout():
            if not used and not config.upstream_keys:
                continue
            layer = nn.Linear(config.condition_dim, width)
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
            if not used:
                layer.requires_grad_(False)
            self.film.add_module(path, layer)
            if used:
                self._film_paths.append(path)
        self._reset_parameters()

    @property
    def alignment(self) -> int:
        """Samples per step of the pooling grid: segments should start on multiples of it."""
        return self.config.hop_length * self.time_ratio

    def end_padding(self, length: int) -> int:
        """Silent samples to append to a signal of ``length`` samples before :meth:`forward`
        (and cut from its output) so that its last samples are not covered by the edge of
        one STFT window alone.

        The centred STFT's last frame is centred on the last multiple of the hop; the samples
        after it lie under that window's falling edge only, and the inverse STFT divides by
        the window there. More than half a hop past it the weight falls below 1/2 (1e-4 at
        the last sample of a full hop), and any unevenness of the mask is amplified by its
        inverse: the bundled model ended such clips in peaks of 3-11. Up to half a hop past
        it nothing is padded, so the output is the network's on the signal as it is (as
        upstream's, whose ResUNet30 has the same edge).
        """
        rest = length % self.config.hop_length
        return self.config.hop_length - rest if rest > self.config.hop_length // 2 else 0

    # ------------------------------------------------------------------ structure
    def _block_names(self) -> list[tuple[str, str]]:
        """(name, side) of every FiLM-able block in upstream traversal order."""
        names = [(f"encoder_block{i + 1}", "encoder") for i in range(self.depth)]
        names.append((f"conv_block{self.depth + 1}a", "encoder"))
        names += [(f"decoder_block{i + 1}", "decoder") for i in range(self.depth)]
        return names

    def _film_layout(self) -> list[tuple[str, int, bool]]:
        """(path, width, used) of each FiLM bias of the placement in the config."""
        layout = []
        placement = self.config.film
        for name, side in self._block_names():
            if placement != "all" and placement != side:
                continue
            block = getattr(self.base, name)
            if isinstance(block, EncoderBlock):
                cb = block.conv_block1
                layout.append((f"{name}->conv_block1->beta1", cb.bn1.num_features, True))
                layout.append((f"{name}->conv_block1->beta2", cb.bn2.num_features, True))
            else:
                layout.append((f"{name}->beta1", block.bn1.num_features, True))
                layout.append((f"{name}->beta2", block.bn1.num_features, False))
                cb = block.conv_block2
                layout.append((f"{name}->conv_block2->beta1", cb.bn1.num_features, True))
                layout.append((f"{name}->conv_block2->beta2", cb.bn2.num_features, True))
            for j in range(1, block.num_extra + 1):
                width = getattr(block, f"extra{j}").bn1.num_features
                layout.append((f"{name}->extra{j}->beta1", width, True))
                layout.append((f"{name}->extra{j}->beta2", width, True))
        return layout

    def _reset_parameters(self) -> None:
        for m in self.base.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def reset_mask_head(self) -> None:
        """Make the network output a half-gain mask with the mixture's phase, for any query.

        Zeroes the 1x1 output convolution and sets its biases to a mask magnitude of
        ``sigmoid(0) = 0.5`` and a phase rotation of 0 (the top frequency bin, which gets no
        map, stays silent with the complex mask), so that training from scratch starts by
        shaping the mask instead of first undoing the random phase rotation that a random head
        applies. Training calls it on fresh networks (:func:`querysep.training.run.build_model`);
        random-weight networks built directly keep a random, query-dependent head.
        """
        head = self.base.after_conv
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            if self.base.num_mask_maps == 3:
                head.bias[1] = 1.0  # real part of the phase map > 0, imaginary part 0

    def grown(self, blocks: int | Sequence[int]) -> ResUNet:
        """A deeper copy that computes the same function, with ``blocks`` blocks per level.

        ``blocks`` is one number for every level or one per level, as in
        :class:`ResUNetConfig`.

        The new blocks (``extra{k}`` after the ones this network has) start with their second
        convolution zeroed, so each adds nothing to its residual path and the copy's output
        equals this network's for every input and query, in training and in inference mode;
        training then moves them away from zero (fine-tuning a trained model with more
        capacity, ``model.grow`` in a training config). Every existing weight is copied.

        Raises:
            ConfigError: ``blocks`` is below what the network has.
        """
        bigger = ResUNet(dataclasses.replace(self.config, blocks=blocks))
        old, new = self.config.level_blocks(), bigger.config.level_blocks()
        if any(n < o for o, n in zip(old, new, strict=True)):
            raise ConfigError(
                f"ResUNet.grown: the network has {list(old)} blocks per level; it can only "
                f"grow, not become {list(new)}"
            )
        state = bigger.state_dict()
        state.update(self.state_dict())
        bigger.load_state_dict(state)
        with torch.no_grad():
            for name, _ in self._block_names():
                block, had = getattr(bigger.base, name), getattr(self.base, name).num_extra
                for k in range(had + 1, block.num_extra + 1):
                    getattr(block, f"extra{k}").conv2.weight.zero_()
        first = next(self.parameters())
        return bigger.to(device=first.device, dtype=first.dtype).train(self.training)

    # ------------------------------------------------------------------ forward
    def film_biases(self, condition: torch.Tensor) -> dict[str, dict[str, Any]]:
        """Per-block FiLM biases, ``{block: {"conv_block1->beta1": (B, C, 1, 1), ...}}``.

        Blocks without FiLM get zeros (as floats), so every block reads the same keys.
        """
        out: dict[str, dict[str, Any]] = {}
        for name, _ in self._block_names():
            if name.startswith("decoder"):
                out[name] = {"beta1": 0.0, "conv_block2->beta1": 0.0, "conv_block2->beta2": 0.0}
            else:
                out[name] = {"conv_block1->beta1": 0.0, "conv_block1->beta2": 0.0}
            for j in range(1, getattr(self.base, name).num_extra + 1):
                out[name].update({f"extra{j}->beta1": 0.0, f"extra{j}->beta2": 0.0})
        for path in self._film_paths:
            block, rest = path.split("->", 1)
            out[block][rest] = getattr(self.film, path)(condition)[:, :, None, None]
        return out

    def forward(self, mixture: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Separate the source described by ``condition`` from ``mixture``.

        Args:
            mixture: Mono mixtures at ``config.sample_rate``.
            condition: Query embeddings, one per mixture.

        Returns:
            Estimated sources, same length as the mixtures.

        Shape:
            - mixture: ``(batch, 1, time)``
            - condition: ``(batch, condition_dim)``
            - output: ``(batch, 1, time)``
        """
        if mixture.dim() != 3 or mixture.shape[1] != 1:
            raise ValueError(f"mixture must be (batch, 1, time), got {tuple(mixture.shape)}")
        if condition.dim() != 2 or condition.shape[0] != mixture.shape[0]:
            raise ValueError(
                f"condition must be (batch={mixture.shape[0]}, dim), got {tuple(condition.shape)}"
            )
        length = mixture.shape[-1]
        min_len = self.config.n_fft // 2 + 1  # reflect padding needs more than n_fft/2 samples
        x_in = F.pad(mixture, (0, min_len - length)) if length < min_len else mixture
        spec = self.stft(x_in[:, 0].float())  # (B, T, F) complex
        mag = (spec.real**2 + spec.imag**2).clamp_min(1e-10).sqrt()
        cos_in, sin_in = spec.real / mag, spec.imag / mag

        maps = self._unet(mag[:, None], condition)  # (B, K, T, F)
        maps = maps.float()
        if self.base.num_mask_maps == 3:
            mask_mag = torch.sigmoid(maps[:, 0])
            m_real, m_imag = torch.tanh(maps[:, 1]), torch.tanh(maps[:, 2])
            # clamped before the root: sqrt's gradient at 0 is infinite (NaN once clamped)
            m_abs = (m_real**2 + m_imag**2).clamp_min(1e-20).sqrt()
            m_cos, m_sin = m_real / m_abs, m_imag / m_abs
            out_cos = cos_in * m_cos - sin_in * m_sin
            out_sin = sin_in * m_cos + cos_in * m_sin
        else:
            mask_mag = torch.sigmoid(maps[:, 0])
            out_cos, out_sin = cos_in, sin_in
        out_mag = F.relu(mag * mask_mag)
        out = torch.complex(out_mag * out_cos, out_mag * out_sin)
        wave = self.stft.inverse(out, x_in.shape[-1])[..., :length]
        return wave[:, None, :]

    def _unet(self, mag: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Mask feature maps from a magnitude spectrogram ``(B, 1, T, F)``."""
        base = self.base
        # In inference under bf16 autocast the cheap ends stay in float32: the FiLM
        # projections, the 1x1 convolutions from the spectrogram and to the mask maps.
        # Rounding the input magnitudes or the mask logits to bf16 cost about 3 dB of
        # agreement with float32 (benchmarks/upstream_speed.py), for under 1% of the
        # inference compute; the FiLM biases are added in the activations' dtype
        # (film_activation): 33-41 dB agreement. Training under autocast runs the two 1x1
        # convolutions and the whole trunk in bf16: there the float32 ends (full-resolution
        # float32 convolutions and their backward, and a first level promoted to float32
        # by its identity shortcut) made the CPU step 1.35x slower (benchmarks/train_speed.py).
        training = torch.is_grad_enabled() and torch.is_autocast_enabled(mag.device.type)
        with _float32(mag):
            betas = self.film_biases(condition.float())
            x = base.bn0(mag.transpose(1, 3)).transpose(1, 3)
        frames, bins = x.shape[2], x.shape[3]
        pad_t = -frames % self.time_ratio
        x = F.pad(x, (0, 0, 0, pad_t))
        x = x[..., : bins - 1]  # 513 -> 512 bins, as upstream
        pad_f = -(bins - 1) % self.freq_ratio
        if pad_f:
            x = F.pad(x, (0, pad_f))
        x = _end_convolution(base.pre_conv, x, in_float32=not training)
        if _is_channels_last(base.encoder_block1.conv_block1.conv1.weight):
            # A one-channel input leaves pre_conv's output in NCHW even when the trunk's
            # weights are channels-last; without this the largest level ran in NCHW and each
            # of its convolutions, adds and cats converted layouts (about a third of the
            # bf16 forward on a 2-core CPU, benchmarks/README.md).
            x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for i in range(self.depth):
            x, skip = getattr(base, f"encoder_block{i + 1}")(x, betas[f"encoder_block{i + 1}"])
            skips.append(skip)
        name = f"conv_block{self.depth + 1}a"
        x, _ = getattr(base, name)(x, betas[name])
        for i in range(self.depth):
            block = getattr(base, f"decoder_block{i + 1}")
            x = block(x, skips[-1 - i], betas[f"decoder_block{i + 1}"])
        x = _end_convolution(base.after_conv, x, in_float32=not training)
        x = x[..., : bins - 1]
        x = F.pad(x, (0, 1))  # the dropped top bin gets a zero map, as upstream
        return x[:, :, :frames, :]

    # ------------------------------------------------------------------ weights
    def load_upstream_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a ResUNet30 state dict of the DCASE T9 baseline or of AudioSep.

        Accepts keys with or without the ``ss_model.`` prefix (Lightning checkpoints) and
        ignores upstream's convolution STFT kernels; every other key and shape must match.

        Raises:
            CheckpointError: Listing missing, unexpected and mis-shaped keys.
        """
        cleaned: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if key.startswith("ss_model."):
                key = key[len("ss_model.") :]
            elif any(key.startswith(p) for p in ("query_encoder.", "loss_function")):
                continue
            if key.startswith(("base.stft.", "base.istft.")):
                continue
            cleaned[key] = value
        load_state_dict_strict(self, cleaned, what="ResUNet")


def _is_channels_last(weight: torch.Tensor) -> bool:
    """True for a 4-d convolution weight stored channels-last (and not also plain NCHW)."""
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def _end_convolution(conv: nn.Module, x: torch.Tensor, in_float32: bool) -> torch.Tensor:
    """``conv(x)``, in float32 outside autocast where ``in_float32`` (see ``ResUNet._unet``)."""
    if not in_float32:
        return conv(x)
    with _float32(x):
        return conv(x.float())


def _float32(like: torch.Tensor) -> torch.autocast:
    """A region that autocast leaves in float32 (on ``like``'s device)."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def load_state_dict_strict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str
) -> None:
    """``load_state_dict(strict=True)`` with one readable error listing every mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k} {tuple(state_dict[k].shape)} != {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if keys:
                shown = ", ".join(keys[:6]) + (
                    f", ... ({len(keys)} in all)" if len(keys) > 6 else ""
                )
                parts.append(f"{label}: {shown}")
        raise CheckpointError(f"{what} weights do not fit the architecture; " + "; ".join(parts))
    module.load_state_dict(dict(state_dict), strict=True)
