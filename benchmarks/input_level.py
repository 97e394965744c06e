"""How a separator's SDRi depends on the input's level, with and without ``normalize``.

Each mixture of a DCASE-format list (made as ``querysep evaluate`` makes it) is scaled to
peak at each level, separated, and scaled back; SDRi is against the unscaled mixture. The
row "as made" keeps the list's own level. Use a list of training-fold clips for design
questions; fold 4 only reports.

    querysep prepare esc50 ../shared/datasets/esc50-16k -o esc50.jsonl
    querysep mixtures make esc50.jsonl -n 60 --split fold1 --split fold2 --split fold3 \\
        --seed 7 -o train60.csv
    python benchmarks/input_level.py train60.csv --audio-dir ../shared/datasets/esc50-16k/audio
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from querysep import Separator
from querysep.data.manifest import read_mixture_list
from querysep.data.mixing import load_row_mixture, row_files


def sdr(target: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(target**2) / max(np.sum((target - estimate) ** 2), 1e-20)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mixtures", help="DCASE-format list (source,noise,snr,caption)")
    ap.add_argument("--audio-dir", required=True)
    ap.add_argument("--model", default="esc50-minilm")
    ap.add_argument("--peaks", default="0.01,0.1,0.3,1,3", help="Peak levels (full scale = 1).")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    peaks = [float(p) for p in args.peaks.split(",")]
    if args.threads < 1 or not peaks or min(peaks) <= 0:
        ap.error("--threads must be at least 1 and every peak above 0")
    torch.set_num_threads(args.threads)
    rows = read_mixture_list(args.mixtures)
    seps = {flag: Separator(args.model, normalize=flag) for flag in (False, True)}
    rate = seps[False].sample_rate
    scores: dict[tuple[str, bool], list[float]] = {}
    peaks_seen = []
    for row in rows:
        mixture, target = load_row_mixture(row, row_files(row, args.audio_dir), rate)
        base = sdr(target, mixture)
        peak = float(np.abs(mixture).max())
        peaks_seen.append(peak)
        for level in ["as made", *peaks]:
            scale = 1.0 if level == "as made" else level / peak
            for flag, sep in seps.items():
                est = sep.separate_tensor(mixture * scale, rate, row.caption)[0, 0].numpy()
                scores.setdefault((str(level), flag), []).append(sdr(target, est / scale) - base)
    print(
        f"{args.model}, {len(rows)} mixtures of {args.mixtures}; mixture peaks: median "
        f"{np.median(peaks_seen):.3f}, 10th-90th percentile {np.percentile(peaks_seen, 10):.3f}"
        f"-{np.percentile(peaks_seen, 90):.3f}"
    )
    print("| peak | SDRi (s.e.) | SDRi with normalize (s.e.) |")
    print("| --- | ---: | ---: |")
    for level in ["as made", *map(str, peaks)]:
        cells = []
        for flag in (False, True):
            v = np.array(scores[(level, flag)])
            cells.append(f"{v.mean():.2f} ({v.std() / np.sqrt(len(v)):.2f})")
        print(f"| {level} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
