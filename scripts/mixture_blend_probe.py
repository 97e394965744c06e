"""Collect what a mixture blend needs, per mixture of a list (a #17 probe).

    python scripts/mixture_blend_probe.py esc50-minilm --mixtures train600.csv -o blend-train.npz
    python scripts/mixture_blend_probe.py esc50-minilm --mixtures benchmarks/esc50-fold4.csv \
        -o blend-fold4.npz

A blend adds back part of what the separator removed: ``est + beta * (mixture - est)``.
Both SDR and SI-SDR of a blend follow from six inner products of the target ``s``, the
estimate ``e`` and the removed part ``u = mixture - e``, so this script separates each
mixture once and stores those (with the row's SNR) in a ``.npz``; ``--fit`` then fits and
scores blending rules from such files without separating again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from querysep import Separator
from querysep.data.manifest import read_mixture_list
from querysep.data.mixing import load_row_mixture, row_files

KEYS = ("ss", "se", "su", "ee", "eu", "uu", "mm", "snr")


def collect(
    model: str, mixtures: Path, audio_dir: Path, limit: int | None
) -> dict[str, np.ndarray]:
    sep = Separator(model, num_threads=2)
    rows = read_mixture_list(mixtures)[:limit]
    stats: dict[str, list[float]] = {k: [] for k in KEYS}
    for row in tqdm(rows, unit="mixture"):
        mix, s = load_row_mixture(row, row_files(row, audio_dir), sep.sample_rate)
        e = sep.separate_tensor(mix, sep.sample_rate, row.caption)[0, 0].numpy().astype(np.float64)
        s, m = s.astype(np.float64), mix.astype(np.float64)
        u = m - e
        for key, (a, b) in {
            "ss": (s, s),
            "se": (s, e),
            "su": (s, u),
            "ee": (e, e),
            "eu": (e, u),
            "uu": (u, u),
            "mm": (m, m),
        }.items():
            stats[key].append(float(a @ b))
        stats["snr"].append(float(row.snr or 0.0))
    return {k: np.asarray(v) for k, v in stats.items()}


def scores(d: dict[str, np.ndarray], beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SDR and SI-SDR (dB) of ``e + beta * u`` per mixture."""
    ss, se, su, ee, eu, uu = (d[k] for k in KEYS[:6])
    sy = se + beta * su  # <s, y>
    yy = ee + 2 * beta * eu + beta**2 * uu
    err = ss - 2 * sy + yy
    sdr = 10 * np.log10(ss / np.maximum(err, 1e-20))
    alpha = sy / ss
    proj = alpha**2 * ss
    si = 10 * np.log10(proj / np.maximum(yy - 2 * alpha * sy + proj, 1e-20))
    return sdr, si


def mixture_sdr(d: dict[str, np.ndarray]) -> np.ndarray:
    ss, se, su = d["ss"], d["se"], d["su"]
    sm = se + su
    err = ss - 2 * sm + d["mm"]
    return 10 * np.log10(ss / err)


def oracle_beta(d: dict[str, np.ndarray]) -> np.ndarray:
    """The beta in [0, 1] minimising |s - e - beta u|^2."""
    return np.clip((d["su"] - d["eu"]) / np.maximum(d["uu"], 1e-20), 0.0, 1.0)


def ratio_db(d: dict[str, np.ndarray]) -> np.ndarray:
    return 10 * np.log10(np.maximum(d["ee"], 1e-20) / np.maximum(d["uu"], 1e-20))


def rule(r: np.ndarray, r0: float, width: float, top: float) -> np.ndarray:
    """beta = top * sigmoid((r - r0) / width)."""
    return top / (1 + np.exp(-(r - r0) / width))


def fit(train: dict[str, np.ndarray]) -> tuple[float, float, float]:
    r = ratio_db(train)
    best, arg = -np.inf, (0.0, 1.0, 0.0)
    for r0 in np.arange(-10, 30.01, 0.5):
        for width in (0.5, 1, 2, 3, 5):
            for top in np.arange(0.05, 1.001, 0.05):
                value = scores(train, rule(r, r0, width, top))[0].mean()
                if value > best:
                    best, arg = value, (float(r0), float(width), float(top))
    return arg


def report(name: str, d: dict[str, np.ndarray], beta: np.ndarray, base: np.ndarray) -> None:
    sdr, si = scores(d, beta)
    sdr0, si0 = scores(d, np.zeros_like(beta))
    diff = sdr - sdr0
    print(
        f"{name}: SDRi {np.mean(sdr - base):.3f} (+{diff.mean():.3f}, s.e. "
        f"{diff.std(ddof=1) / np.sqrt(len(diff)):.3f}), SI-SDR {si.mean():.3f} "
        f"({si.mean() - si0.mean():+.3f}), mean beta {beta.mean():.3f}"
    )


def diagnose(d: dict[str, np.ndarray], base: np.ndarray) -> None:
    """Where the oracle's gain lies: the mixtures whose output is worse than the mixture."""
    sdr0, _ = scores(d, np.zeros_like(base))
    sdri = sdr0 - base
    gain = scores(d, oracle_beta(d))[0] - sdr0
    worse = sdri < 0
    either = np.maximum(sdr0, base) - base  # each mixture's better of output and mixture
    print(
        f"  output or mixture, the better (oracle): SDRi {either.mean():.3f}; best beta 0 on "
        f"{np.mean(oracle_beta(d) == 0):.0%}"
    )
    print(
        f"  worse than the mixture: {worse.mean():.1%} of mixtures, mean SDRi "
        f"{sdri[worse].mean():.2f}, {gain[worse].sum() / gain.sum():.0%} of the oracle-beta gain"
    )
    snr = d["snr"]
    for lo, hi in ((-15, -6), (-5, 4), (5, 15)):
        band = (snr >= lo) & (snr <= hi)
        print(f"  SNR {lo}..{hi} dB: {worse[band].mean():.1%} worse ({band.sum()} mixtures)")
    bands = ((-15, -10), (-9, -5), (-4, 0), (1, 5), (6, 10), (11, 15))
    cells = [f"{lo}..{hi} {sdri[(snr >= lo) & (snr <= hi)].mean():.2f}" for lo, hi in bands]
    print("  SDRi by SNR (dB): " + ", ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default="esc50-minilm")
    parser.add_argument("--mixtures")
    parser.add_argument("--audio-dir", default="../shared/datasets/esc50-16k/audio")
    parser.add_argument("--limit", type=int)
    parser.add_argument("-o", "--output")
    parser.add_argument("--fit", nargs="+", metavar="NPZ", help="TRAIN.npz [EVAL.npz ...]")
    args = parser.parse_args()
    if args.fit:
        train = dict(np.load(args.fit[0]))
        params = fit(train)
        print(f"fitted on {args.fit[0]}: r0 {params[0]}, width {params[1]}, top {params[2]:.2f}")
        for path in args.fit:
            d = dict(np.load(path))
            base = mixture_sdr(d)
            print(f"== {path} ({len(base)} mixtures)")
            report("model", d, np.zeros_like(base), base)
            report("fitted blend", d, rule(ratio_db(d), *params), base)
            report("oracle beta", d, oracle_beta(d), base)
            for beta in (0.05, 0.1):
                report(f"fixed beta {beta}", d, np.full_like(base, beta), base)
            diagnose(d, base)
        return
    if not (args.mixtures and args.output):
        parser.error("give --mixtures and -o (to collect), or --fit NPZ ... (to fit and score)")
    stats = collect(args.model, Path(args.mixtures), Path(args.audio_dir), args.limit)
    np.savez(args.output, **stats)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
