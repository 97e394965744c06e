"""Real-time factor and size of a model, against the DCASE baseline's ResUNet30 in the same run.

    python benchmarks/speed.py                      # the default model
    python benchmarks/speed.py --model DIR --seconds 10 --repeats 5 --threads 2

For each model it separates a synthetic clip of ``--seconds`` with ``Separator.separate_tensor``
(one query; resampling, segmentation and text encoding included; the first call is a warm-up)
and prints the best wall time of ``--repeats`` calls, the real-time factor (time / duration;
lower is faster), the parameter count, the size of its weights, and the speed ratio to the
ResUNet30 preset of the DCASE 2024 T9 baseline (random weights, same compute) measured in the
same process.
"""

from __future__ import annotations

import argparse
import time

import torch

from querysep import Separator
from querysep.models import HashingTextEncoder, ResUNet, ResUNetConfig, TextQueriedSeparator
from querysep.pretrained import DEFAULT_MODEL
from querysep.testing import synth


def best_time(sep: Separator, audio, repeats: int) -> float:
    sep.separate_tensor(audio, 16000, "a dog barking")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sep.separate_tensor(audio, 16000, "a dog barking")
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.repeats < 1 or args.threads < 1 or not args.seconds > 0:
        ap.error("--repeats and --threads must be at least 1 and --seconds above 0")
    torch.set_num_threads(args.threads)
    audio = synth.scene(args.seconds, 16000, seed=0)
    baseline = TextQueriedSeparator(
        ResUNet(ResUNetConfig.resunet30(16000)), HashingTextEncoder(512)
    )
    rows = []
    for name, model in ((args.model, args.model), ("resunet30 (DCASE baseline)", baseline)):
        sep = Separator(model, segment_seconds=max(10.0, args.seconds))
        seconds = best_time(sep, audio, args.repeats)
        params = sum(p.numel() for p in sep.model.net.parameters())
        size = sum(t.numel() * t.element_size() for t in sep.model.net.state_dict().values())
        rows.append((name, seconds, params, size))
    base_seconds = rows[-1][1]
    print(f"{args.seconds:g} s clip at 16 kHz, {args.threads} threads, best of {args.repeats}")
    for name, seconds, params, size in rows:
        print(
            f"  {name:28s} {seconds:7.3f} s  RTF {seconds / args.seconds:.4f}  "
            f"{params / 1e6:5.2f} M params  {size / 2**20:6.1f} MiB  "
            f"{base_seconds / seconds:5.1f}x the baseline's speed"
        )


if __name__ == "__main__":
    main()
