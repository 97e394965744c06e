"""How a separator's SDRi depends on the input's level, with and without ``normalize``.

Each mixture of a DCASE-format list (made as ``querysep evaluate`` makes it) is scaled to
peak at each level, separated, and scaled back; SDRi is against the unscaled mixture. The
row "as made" keeps the list's own level. ``--guard LO HI`` adds a column where only a
mixture whose peak lies outside ``[LO, HI]`` is scaled, to the nearest end, for the model
(the estimate scaled back), and a paired difference at the list's own level. Use a list of
training-fold clips for design questions; fold 4 only reports (``--peaks ''``: its own
level only).

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


def mean_se(values: list[float]) -> str:
    v = np.asarray(values)
    return f"{v.mean():.2f} ({v.std() / np.sqrt(len(v)):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mixtures", help="DCASE-format list (source,noise,snr,caption)")
    ap.add_argument("--audio-dir", required=True)
    ap.add_argument("--model", default="esc50-minilm")
    ap.add_argument(
        "--peaks",
        default="0.01,0.1,0.3,1,3",
        help="Peak levels (full scale = 1), comma-separated; '' for the list's own level only.",
    )
    ap.add_argument("--guard", type=float, nargs=2, metavar=("LO", "HI"), help="See above.")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    try:
        peaks = [float(p) for p in args.peaks.split(",") if p.strip()]
    except ValueError:
        ap.error(f"--peaks: not a comma-separated list of numbers: {args.peaks!r}")
    if args.threads < 1 or min(peaks, default=1.0) <= 0:
        ap.error("--threads must be at least 1 and every peak above 0")
    if args.guard and not 0 < args.guard[0] <= args.guard[1]:
        ap.error("--guard needs 0 < LO <= HI")
    torch.set_num_threads(args.threads)
    rows = read_mixture_list(args.mixtures)
    seps = {flag: Separator(args.model, normalize=flag) for flag in (False, True)}
    rate = seps[False].sample_rate
    variants = ["plain", "normalize"] + (["guard"] if args.guard else [])
    scores: dict[tuple[str, str], list[float]] = {}
    peaks_seen = []
    for row in rows:
        mixture, target = load_row_mixture(row, row_files(row, args.audio_dir), rate)
        base = sdr(target, mixture)
        peak = float(np.abs(mixture).max())
        peaks_seen.append(peak)
        for level in ["as made", *peaks]:
            scale = 1.0 if level == "as made" else level / peak
            for variant in variants:
                gain = 1.0
                if variant == "guard":  # to the nearest end of [LO, HI], if outside
                    gain = float(np.clip(peak * scale, *args.guard)) / (peak * scale)
                sep = seps[variant == "normalize"]
                x = mixture * (scale * gain)
                est = sep.separate_tensor(x, rate, row.caption)[0, 0].numpy() / (scale * gain)
                scores.setdefault((str(level), variant), []).append(sdr(target, est) - base)
    print(
        f"{args.model}, {len(rows)} mixtures of {args.mixtures}; mixture peaks: median "
        f"{np.median(peaks_seen):.3f}, 10th-90th percentile {np.percentile(peaks_seen, 10):.3f}"
        f"-{np.percentile(peaks_seen, 90):.3f}"
    )
    names = {"plain": "SDRi", "normalize": "SDRi with normalize"}
    if args.guard:
        names["guard"] = f"SDRi with the peak kept in [{args.guard[0]:g}, {args.guard[1]:g}]"
    print("| peak | " + " | ".join(f"{names[v]} (s.e.)" for v in variants) + " |")
    print("| --- |" + " ---: |" * len(variants))
    for level in ["as made", *map(str, peaks)]:
        print(f"| {level} | " + " | ".join(mean_se(scores[(level, v)]) for v in variants) + " |")
    if args.guard:
        inside = [args.guard[0] <= p <= args.guard[1] for p in peaks_seen]
        diff = np.subtract(scores[("as made", "guard")], scores[("as made", "plain")])
        print(
            f"guard - plain at the list's own level, paired: SDRi {diff.mean():+.3f} (s.e. "
            f"{diff.std(ddof=1) / np.sqrt(len(diff)):.3f}); {len(inside) - sum(inside)} of "
            f"{len(inside)} mixtures outside [{args.guard[0]:g}, {args.guard[1]:g}]"
        )


if __name__ == "__main__":
    main()
