"""Data-loader cost of the training effects: milliseconds per training item, each effect on.

    python benchmarks/effects_speed.py [--items 200] [--seconds 4]

Builds MixtureTrainingDataset items (16 kHz, 4 s segments from six 5 s noise clips held in
memory) with no effect, then with each of reverberation, EQ and a third source at
probability 1, then all three, on one thread (run it as ``OMP_NUM_THREADS=1 python ...``
for the per-worker figure), and prints each against the plain items of the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from querysep.data import Clip, Mixer
from querysep.data.datasets import MixtureTrainingDataset
from querysep.data.effects import Effects

VARIANTS = {
    "plain": {},
    "reverberation": {"effects": Effects(reverb_prob=1.0)},
    "EQ": {"effects": Effects(eq_prob=1.0)},
    "third source": {"three_source_prob": 1.0},
    "all three": {"effects": Effects(reverb_prob=1.0, eq_prob=1.0), "three_source_prob": 1.0},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        clips = []
        for k in range(6):
            path = Path(folder) / f"{k}.wav"
            sf.write(path, (0.1 * rng.standard_normal(80000)).astype(np.float32), 16000)
            clips.append(Clip(id=str(k), audio=str(path), captions=[f"c{k}"], labels=[f"l{k}"]))
        times = {}
        for name, options in VARIANTS.items():
            dataset = MixtureTrainingDataset(
                clips, 16000, args.seconds, Mixer((-15.0, 15.0)), length=args.items, **options
            )
            dataset.preload()
            dataset[0]  # warm-up
            start = time.perf_counter()
            for i in range(args.items):
                dataset[i]
            times[name] = (time.perf_counter() - start) / args.items * 1e3
    print(f"{args.seconds:g} s items at 16 kHz, {args.items} each, effects at probability 1")
    for name, ms in times.items():
        print(f"  {name:14s} {ms:6.2f} ms/item  {ms / times['plain']:6.1f}x the plain items")


if __name__ == "__main__":
    main()
