"""Tiny AudioLDM components for tests, built in code with the real architecture classes.

:func:`tiny_audioldm_folder` saves a diffusers-format AudioLDM folder (``vae/``,
``vocoder/``, ``unet/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``) of random-weight
components a few hundred kilobytes in all, with AudioLDM's geometry where it matters (one
mel channel, 64 mel bins, a 16 kHz vocoder with a hop of 160, a UNet conditioned through a
``simple_projection`` class embedding), so the real loading path reads it back.

:func:`identity_vae` is an ``AutoencoderKL`` whose weights are set by hand so that it
encodes a log-mel spectrogram into latent channel 0 and decodes it back to within float
rounding: a "perfect" VAE with the real class, to test what the output paths do with a
correct latent. Needs diffusers (the ``gen`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "ALL_PARTS",
    "identity_vae",
    "tiny_audioldm_folder",
    "tiny_irm_ldm_config",
    "tiny_unet",
    "tiny_vae",
    "tiny_vocoder",
]

ALL_PARTS = ("vae", "vocoder", "unet", "scheduler", "text_encoder", "tokenizer")
#: Width of the CLAP text embedding of the tiny text tower (and the UNet's class input).
TEXT_DIM = 16


def tiny_vae(seed: int = 0, latent_channels: int = 4) -> Any:
    """A random mel ``AutoencoderKL``: two levels (factor 2), attention in the mid block."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(
            in_channels=1,
            out_channels=1,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(8, 16),
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=4,
            sample_size=64,
            scaling_factor=0.5,
        ).eval()


def identity_vae(latent_channels: int = 4, scaling_factor: float = 0.5) -> Any:
    """An ``AutoencoderKL`` (one level, 8 channels) that is the identity on channel 0.

    Every residual branch and attention output is zeroed, so each block passes its input
    through. The group norms before the output convolutions see, in one group, the signal
    ``x``, ``-x`` and two constants ``+K`` and ``-K``: the group's mean is exactly 0 and its
    deviation ``K / sqrt(2)`` up to ``x^2 / K^2``, so scaling by ``K / sqrt(2)`` undoes the
    normalisation; a shift of 100 keeps the SiLU in its linear part, and the output
    convolution removes it. The latent's mean channel 0 is the input, the other channels 0.
    """
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(8,),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=2,
        sample_size=64,
        scaling_factor=scaling_factor,
    ).eval()
    big, shift = 1.0e4, 100.0
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if ".conv2." in name or ".to_out." in name:
                param.zero_()
        for coder in (vae.encoder, vae.decoder):
            conv_in = coder.conv_in
            conv_in.weight.zero_()
            conv_in.bias.zero_()
            conv_in.weight[0, 0, 1, 1] = 1.0
            conv_in.weight[1, 0, 1, 1] = -1.0
            conv_in.bias[2], conv_in.bias[3] = big, -big
            norm = coder.conv_norm_out
            norm.weight.zero_()
            norm.bias.zero_()
            norm.weight[0] = big / math.sqrt(2.0)
            norm.bias[0] = shift
            conv_out = coder.conv_out
            conv_out.weight.zero_()
            conv_out.bias.zero_()
            conv_out.weight[0, 0, 1, 1] = 1.0
            conv_out.bias[0] = -shift
        for conv in (vae.quant_conv, vae.post_quant_conv):
            conv.weight.copy_(torch.eye(conv.weight.shape[0])[:, :, None, None])
            conv.bias.zero_()
    return vae


def tiny_vocoder(seed: int = 0) -> Any:
    """A random ``SpeechT5HifiGan`` with AudioLDM's interface: 64 mels, hop 160, 16 kHz."""
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    config = SpeechT5HifiGanConfig(
        model_in_dim=64,
        sampling_rate=16000,
        upsample_initial_channel=64,
        upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[10, 8, 4, 4, 4],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        normalize_before=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SpeechT5HifiGan(config).eval()


def tiny_unet(seed: int = 0, latent_channels: int = 4) -> Any:
    """A random ``UNet2DConditionModel`` conditioned like AudioLDM's (no cross-attention
    context; the text embedding enters through a ``simple_projection`` class embedding
    concatenated to the time embedding)."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(
            sample_size=16,
            in_channels=latent_channels,
            out_channels=latent_channels,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(16, 32),
            layers_per_block=1,
            cross_attention_dim=(16, 32),
            attention_head_dim=4,
            norm_num_groups=8,
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=TEXT_DIM,
            class_embeddings_concat=True,
        ).eval()


def _scheduler() -> Any:
    from diffusers import DDIMScheduler

    # AudioLDM's schedule (its conversion script): 1000 steps, scaled-linear betas.
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )


def _text_encoder(seed: int) -> Any:
    from transformers import ClapTextConfig, ClapTextModelWithProjection

    config = ClapTextConfig(
        vocab_size=320,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=64,
        max_position_embeddings=80,
        projection_dim=TEXT_DIM,
        pad_token_id=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ClapTextModelWithProjection(config).eval()


def tiny_audioldm_folder(
    folder: str | Path,
    parts: Sequence[str] = ALL_PARTS,
    *,
    seed: int = 0,
    vae: Any = None,
) -> Path:
    """Save tiny random AudioLDM components in the diffusers folder layout.

    Args:
        folder: Where to save (created).
        parts: Which sub-folders to write (see :data:`ALL_PARTS`).
        seed: Weight seed.
        vae: A VAE to save instead of :func:`tiny_vae` (e.g. :func:`identity_vae`).

    Returns:
        ``folder``.
    """
    from .clap import tiny_roberta_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(parts) - set(ALL_PARTS))
    if unknown:
        raise ValueError(f"unknown AudioLDM parts {unknown}; known: {ALL_PARTS}")
    vae = vae if vae is not None else tiny_vae(seed)
    latent_channels = int(vae.config.latent_channels)
    makers = {
        "vae": lambda: vae,
        "vocoder": lambda: tiny_vocoder(seed),
        "unet": lambda: tiny_unet(seed, latent_channels),
        "scheduler": _scheduler,
        "text_encoder": lambda: _text_encoder(seed),
    }
    for part in parts:
        if part == "tokenizer":
            tiny_roberta_tokenizer(folder / "tokenizer")
        else:
            makers[part]().save_pretrained(str(folder / part))
    return folder


def tiny_irm_ldm_config(ldm: str | Path, **overrides: Any) -> dict[str, Any]:
    """An ``irm-ldm`` network config for tiny components (mask network of 8-channel levels)."""
    config: dict[str, Any] = {
        "ldm": str(ldm),
        "channels": [8, 8, 8, 8, 8],
        "downsample": [[2, 2], [2, 2], [2, 2], [2, 2], [1, 1]],
        "condition_dim": TEXT_DIM,
        "griffin_lim_iters": 4,
    }
    config.update(overrides)
    return config
