"""Small-CLAP speed with channels-last convolutions against contiguous ones, in the same run.

    python benchmarks/clap_speed.py                 # the recipe's network, the bundled weights
    python benchmarks/clap_speed.py --steps 40 --threads 2

Times, for each memory format of the audio tower (the order alternating between rounds; the
best median of ``--rounds``):

- **network step**: the network part of a ``querysep clap train`` step on the network of
  ``configs/esc50-clap.yaml`` (batch 32 of 4 s log-mel crops, forward, symmetric InfoNCE
  against 50 texts, backward, AdamW with its state created in the layout timed); the
  augmentation of a real step (mel resampling, mixup, masks), which costs the same in both
  layouts, is left out, so a whole step gains less; in the precision ``precision: auto`` picks
  (``--precision 32``: float32, what a CPU without native bf16 runs);
- **embedding**: ``embed_audio`` of a 10 s clip by the bundled ``esc50-clap`` (five members,
  float32), as ``querysep ats`` runs it.

It prints milliseconds per step / per clip and the ratio contiguous / channels-last (> 1: the
channels-last layout, which ``SmallClap`` uses, is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from querysep.clap import load_clap
from querysep.clap.small import ClapEnsemble, SmallClap
from querysep.clap.train import contrastive_loss, load_train_config
from querysep.precision import resolve_precision

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "esc50-clap.yaml"
FORMATS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


def _set_format(model: SmallClap | ClapEnsemble, fmt: torch.memory_format) -> None:
    for member in model.members if isinstance(model, ClapEnsemble) else [model]:
        member.audio.to(memory_format=fmt)


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="training steps timed per round")
    ap.add_argument("--clips", type=int, default=20, help="embeddings timed per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--precision", default="auto", help="training precision: auto (as the recipe) or 32"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = load_train_config(str(RECIPE))
    use_bf16 = resolve_precision(args.precision, torch.device("cpu")) == "bf16-mixed"
    model = SmallClap(config.model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # made again for each layout below
    frames = round(4.0 * config.model.sample_rate / config.model.hop_length)
    logmel = torch.randn(config.batch_size, config.model.n_mels, frames)
    text = torch.nn.functional.normalize(torch.randn(50, config.model.text_dim), dim=-1)
    soft = torch.nn.functional.one_hot(torch.arange(config.batch_size) % 50, 50).float()

    def step() -> None:  # uses the optimiser of the layout being timed (opt, rebound below)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            a = model.audio_head(model.audio(logmel))
            t = model.text_features(text)
        loss = contrastive_loss(a, t, soft, model.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    bundled = load_clap("esc50-clap")
    clip = (np.random.default_rng(0).standard_normal(160000) * 0.1).astype(np.float32)
    best: dict[tuple[str, str], float] = {}
    for round_ in range(args.rounds):
        order = list(FORMATS.items())
        for name, fmt in order if round_ % 2 == 0 else order[::-1]:
            _set_format(model, fmt)
            _set_format(bundled, fmt)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # state in this layout
            for what, fn, n in (
                ("network step", step, args.steps),
                ("embedding", lambda: bundled.embed_audio(clip, 16000), args.clips),
            ):
                ms = _median_ms(fn, n)
                best[(what, name)] = min(ms, best.get((what, name), float("inf")))
    print(
        f"torch threads {args.threads}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"training precision {'bf16-mixed' if use_bf16 else '32'}"
    )
    for what in ("network step", "embedding"):
        plain, last = best[(what, "contiguous")], best[(what, "channels-last")]
        print(
            f"{what:14s} contiguous {plain:7.1f} ms  channels-last {last:7.1f} ms  "
            f"ratio {plain / last:.2f}x"
        )


if __name__ == "__main__":
    main()
