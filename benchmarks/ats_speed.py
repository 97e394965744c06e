"""Time to score many (clip, text) pairs, against pair-by-pair scoring in the same run.

    python benchmarks/ats_speed.py                       # ESC-50 fold 4 x its 50 labels
    python benchmarks/ats_speed.py --clap DIR --clips 400 --texts 50 --threads 2

Builds a pair list of ``--clips`` audio files x ``--texts`` texts (default: the 400 clips of
ESC-50 fold 4 in ``../shared/datasets/esc50-16k`` and the 50 class labels as texts: 20,000
pairs), then times:

- **bulk**: :func:`querysep.clap.files.score_pairs`, what ``querysep ats --list`` runs: each
  distinct file and each distinct text embedded once, windows batched across files;
- **pair by pair** (the baseline): each pair embeds its own audio and text, as a loop over
  ``model.score(file, text)`` would; timed on ``--baseline-pairs`` pairs and scaled to all.

It prints both times, pairs/s, and the speed-up ratio (baseline / bulk). The model is loaded
before timing starts; the first bulk run is not a warm-up (files are decoded cold, as a
user's first run does).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from pathlib import Path

import torch

from querysep.audio.io import load_audio
from querysep.clap import load_clap
from querysep.clap.files import score_pairs

ESC50 = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "esc50-16k"


def esc50_fold(fold: int) -> tuple[list[Path], list[str]]:
    with (ESC50 / "esc50.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == str(fold)]
    files = [ESC50 / "audio" / r["filename"] for r in rows]
    labels = sorted({r["category"].replace("_", " ") for r in rows})
    return files, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clap", default=None, help="audio-text model (default: the bundled one)")
    ap.add_argument("--fold", type=int, default=4)
    ap.add_argument("--clips", type=int, default=400)
    ap.add_argument("--texts", type=int, default=50)
    ap.add_argument("--baseline-pairs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    files, labels = esc50_fold(args.fold)
    files, texts = files[: args.clips], labels[: args.texts]
    pairs = list(itertools.product(files, texts))
    model = load_clap(args.clap)
    print(f"model {model.name}: {len(files)} clips x {len(texts)} texts = {len(pairs)} pairs")
    print(
        f"torch threads {torch.get_num_threads()}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )

    t0 = time.perf_counter()
    scores = score_pairs(model, [p for p, _ in pairs], [t for _, t in pairs])
    bulk = time.perf_counter() - t0

    step = max(1, len(pairs) // args.baseline_pairs)
    sample = pairs[::step][: args.baseline_pairs]
    t0 = time.perf_counter()
    naive = []
    for path, text in sample:
        audio, rate = load_audio(path, mono=True)
        naive.append(float(model.score(audio[0], rate, [text])[0, 0]))
    per_pair = (time.perf_counter() - t0) / len(sample)
    baseline = per_pair * len(pairs)
    index = {pair: i for i, pair in enumerate(pairs)}
    worst = max(abs(naive[j] - scores[index[pair]]) for j, pair in enumerate(sample))

    print(f"bulk (score_pairs):   {bulk:8.1f} s  {len(pairs) / bulk:9.0f} pairs/s")
    print(
        f"pair by pair:         {baseline:8.1f} s  {1 / per_pair:9.0f} pairs/s "
        f"(measured on {len(sample)} pairs, scaled)"
    )
    print(f"speed-up: {baseline / bulk:.1f}x; largest score difference {worst:.2e}")


if __name__ == "__main__":
    main()
