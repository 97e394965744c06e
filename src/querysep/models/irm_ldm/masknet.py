"""The masking network of IRM-LDM: a text-conditioned ResUNet over a VAE latent.

It reads the mixture's latent ``(batch, channels, time, freq)`` and returns a ratio mask of
the same shape: the report's five ResUNet blocks (here: five encoder levels, a bottleneck
and the mirrored decoder, built from the baseline's residual blocks in
:mod:`querysep.models.resunet`), each conditioned on the query by FiLM shifts before its
activations. The pooling plan is the caller's: AudioLDM's latent has 16 frequency steps,
which allows four halvings, so the default pools (2, 2) four times and keeps the fifth
level at full size.

The mask is bounded: ``sigmoid`` gives ``[0, bound]`` (the report's, with ``bound`` 1), and
``tanh`` gives ``[-bound, bound]``: a latent is signed, so a mask in ``[0, 1]`` cannot turn
every mixture latent into every target latent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..resunet import DecoderBlock, EncoderBlock

__all__ = ["LatentMaskNet", "MaskActivation"]

MaskActivation = Literal["sigmoid", "tanh"]


class LatentMaskNet(nn.Module):
    """Query-conditioned ratio-mask estimation on a latent.

    Args:
        latent_channels: Channels of the latent (8 for AudioLDM's VAE).
        channels: Output channels of each encoder level.
        downsample: (time, freq) pooling after each encoder level.
        condition_dim: Size of the query embedding.
        kernel_size: Kernel of every residual convolution (odd).
        momentum: Batch-norm momentum.
        activation: ``sigmoid`` (mask in ``[0, bound]``) or ``tanh`` (``[-bound, bound]``).
        bound: Largest mask magnitude.
    """

    def __init__(
        self,
        latent_channels: int,
        channels: Sequence[int],
        downsample: Sequence[Sequence[int]],
        condition_dim: int,
        *,
        kernel_size: int = 3,
        momentum: float = 0.01,
        activation: MaskActivation = "sigmoid",
        bound: float = 1.0,
    ) -> None:
        super().__init__()
        if len(channels) != len(downsample):
            raise ValueError("one (time, freq) pooling factor per level is needed")
        self.activation = activation
        self.bound = float(bound)
        self.time_ratio = math.prod(d[0] for d in downsample)
        self.freq_ratio = math.prod(d[1] for d in downsample)
        self.depth = len(channels)
        self.pre_conv = nn.Conv2d(latent_channels, channels[0], kernel_size=1)
        ins = (channels[0], *channels[:-1])
        widths: list[int] = []
        for i in range(self.depth):
            block = EncoderBlock(ins[i], channels[i], kernel_size, downsample[i], momentum)
            self.add_module(f"encoder_block{i + 1}", block)
            widths += [ins[i], channels[i]]
        self.bottleneck = EncoderBlock(channels[-1], channels[-1], kernel_size, (1, 1), momentum)
        widths += [channels[-1], channels[-1]]
        current = channels[-1]
        for i in range(self.depth):
            level = self.depth - 1 - i
            out = channels[level]
            block = DecoderBlock(current, out, kernel_size, downsample[level], momentum, False)
            self.add_module(f"decoder_block{i + 1}", block)
            widths += [current, 2 * out, out]
            current = out
        self.after_conv = nn.Conv2d(current, latent_channels, kernel_size=1)
        self.widths = widths
        # One linear layer gives every FiLM shift of every block, in the order above.
        self.film = nn.Linear(condition_dim, sum(widths))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def reset_mask_head(self) -> None:
        """Start from the identity: a mask of (about) 1 everywhere, for every query.

        With a bound above 1 the mask is exactly 1; with bound 1 it is as close as the
        activation gets at a logit of 3 (0.95 for sigmoid, 0.995 for tanh).
        """
        if self.bound > 1:
            target = 1.0 / self.bound
            logit = (
                math.log(target / (1 - target))
                if self.activation == "sigmoid"
                else math.atanh(target)
            )
        else:
            logit = 3.0
        with torch.no_grad():
            self.after_conv.weight.zero_()
            self.after_conv.bias.fill_(logit)

    def _shifts(self, condition: torch.Tensor) -> list[torch.Tensor]:
        flat = self.film(condition.float())
        return [s[:, :, None, None] for s in flat.split(self.widths, dim=1)]

    def forward(self, latent: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The mask for each latent and query.

        Shape:
            - latent: ``(batch, latent_channels, time, freq)``
            - condition: ``(batch, condition_dim)``
            - output: like ``latent``, in the activation's range
        """
        frames, bins = latent.shape[-2:]
        shifts = iter(self._shifts(condition))
        x = F.pad(latent, (0, -bins % self.freq_ratio, 0, -frames % self.time_ratio))
        x = self.pre_conv(x)
        skips = []
        for i in range(self.depth):
            block = getattr(self, f"encoder_block{i + 1}")
            x, skip = block(
                x, {"conv_block1->beta1": next(shifts), "conv_block1->beta2": next(shifts)}
            )
            skips.append(skip)
        x, _ = self.bottleneck(
            x, {"conv_block1->beta1": next(shifts), "conv_block1->beta2": next(shifts)}
        )
        for i in range(self.depth):
            block = getattr(self, f"decoder_block{i + 1}")
            betas = {
                "beta1": next(shifts),
                "conv_block2->beta1": next(shifts),
                "conv_block2->beta2": next(shifts),
            }
            x = block(x, skips[-1 - i], betas)
        logits = self.after_conv(x)[..., :frames, :bins].float()
        if self.activation == "sigmoid":
            return self.bound * torch.sigmoid(logits)
        return self.bound * torch.tanh(logits)
