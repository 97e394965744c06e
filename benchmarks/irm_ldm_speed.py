"""CPU time of IRM-LDM (System 3) per clip, stage by stage, for each output path.

Builds the components with random weights at AudioLDM-s's sizes (the VAE of
cvssp/audioldm-s-full-v2: 128-256-512 channels, 2 blocks a level, 8 latent channels,
mid-block attention; its HiFi-GAN: 1024 initial channels, upsampling 5-4-2-2-2) or at the
bundled small VAE's (configs/esc50-melvae.yaml), saves them in the diffusers layout, loads
them through IRM-LDM's own loading path and times one clip:

    python benchmarks/irm_ldm_speed.py                      # AudioLDM-s sizes, 10 s clip
    python benchmarks/irm_ldm_speed.py --sizes esc50 --seconds 10

Weights are random: only the time means anything. The mask network is the one of
configs/irm-ldm-audioldm.yaml (or irm-ldm-esc50.yaml for ``--sizes esc50``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZES = {
    "audioldm-s": {
        "vae": {
            "block_out_channels": (128, 256, 512),
            "layers_per_block": 2,
            "norm_num_groups": 32,
            "mid_block_add_attention": True,
        },
        "vocoder": True,
        "channels": [64, 128, 256, 256, 256],
    },
    "esc50": {
        "vae": {
            "block_out_channels": (16, 32),
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "mid_block_add_attention": False,
        },
        "vocoder": False,
        "channels": [24, 48, 96, 96, 96],
    },
}


def save_components(folder: Path, sizes: dict) -> None:
    """Random-weight VAE (and vocoder) of these sizes, in the diffusers layout."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(0)
    levels = len(sizes["vae"]["block_out_channels"])
    AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=8,
        **sizes["vae"],
    ).save_pretrained(str(folder / "vae"))
    if sizes["vocoder"]:
        config = SpeechT5HifiGanConfig(
            model_in_dim=64,
            sampling_rate=16000,
            upsample_initial_channel=1024,
            upsample_rates=[5, 4, 2, 2, 2],
            upsample_kernel_sizes=[16, 16, 8, 4, 4],
            resblock_kernel_sizes=[3, 7, 11],
            resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            normalize_before=False,
        )
        SpeechT5HifiGan(config).save_pretrained(str(folder / "vocoder"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=sorted(SIZES), default="audioldm-s")
    parser.add_argument("--seconds", type=float, default=10.0, help="Clip length.")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    parser.add_argument("--griffin-lim-iters", type=int, default=32)
    args = parser.parse_args()
    try:
        import diffusers  # noqa: F401  (the gen extra)
    except ImportError:
        raise SystemExit("irm_ldm_speed: needs diffusers: pip install 'querysep[gen]'") from None

    import torch

    from querysep.models.irm_ldm import IrmLdm, IrmLdmConfig, peak_gain

    torch.set_num_threads(args.threads)
    sizes = SIZES[args.sizes]
    with tempfile.TemporaryDirectory() as tmp:
        save_components(Path(tmp), sizes)
        config = IrmLdmConfig(
            ldm=tmp,
            condition_dim=512,
            channels=sizes["channels"],
            griffin_lim_iters=args.griffin_lim_iters,
        )
        net = IrmLdm(config).eval()
    vae_params = sum(p.numel() for p in net.vae.parameters()) / 1e6
    mask_params = sum(p.numel() for p in net.parameters()) / 1e6
    print(
        f"{args.sizes}: VAE {vae_params:.1f} M parameters, mask network {mask_params:.1f} M; "
        f"{args.seconds:g} s clip, {args.threads} threads, float32"
    )
    mixture = 0.1 * torch.randn(1, 1, round(args.seconds * 16000))
    condition = torch.randn(1, 512)
    times: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - start
        return out

    with torch.inference_mode():
        wave, length = net.prepare(mixture)
        gain = peak_gain(wave)
        spec = timed("STFT + log-mel", lambda: net.front.spectrogram(wave * gain))
        _, latent = timed("VAE encoder", lambda: net.encode(spec))
        mask = timed("mask network", lambda: net.mask_net(latent, condition))
        frames = spec.shape[1]
        mel = timed("VAE decoder (estimate)", lambda: net.decode(mask * latent, frames))
        mix_mel = timed("VAE decoder (mixture)", lambda: net.decode(latent, frames))
        timed(
            "mask + inverse STFT",
            lambda: net.synthesize(
                mel, spec, length, mixture_mel=mix_mel, output="phase-preserving"
            ),
        )
        if net.has_vocoder:
            timed("HiFi-GAN vocoder", lambda: net.synthesize(mel, spec, length, output="vocoder"))
        timed(
            f"Griffin-Lim ({args.griffin_lim_iters} iterations)",
            lambda: net.synthesize(mel, spec, length, output="griffin-lim"),
        )
    common = sum(times[k] for k in ("STFT + log-mel", "VAE encoder", "mask network"))
    common += times["VAE decoder (estimate)"]
    for name, seconds in times.items():
        print(f"  {name:<32} {seconds:7.2f} s")
    paths = {
        "phase-preserving": common + times["VAE decoder (mixture)"] + times["mask + inverse STFT"],
        "griffin-lim": common + times[f"Griffin-Lim ({args.griffin_lim_iters} iterations)"],
    }
    if "HiFi-GAN vocoder" in times:
        paths["vocoder"] = common + times["HiFi-GAN vocoder"]
    for name, seconds in paths.items():
        print(f"{name:<18} {seconds:7.2f} s per {args.seconds:g} s clip")


if __name__ == "__main__":
    main()
