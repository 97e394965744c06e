"""Paired difference of two systems in one or more `querysep evaluate` folders.

    python scripts/paired_difference.py EVAL_FOLDER [EVAL_FOLDER ...] --base A --system B

For every mixture that both systems scored (matched on source, noise, SNR and query), the
difference B - A of each metric in per_clip.csv (its columns after ``system``: SDR, SDRi,
SI-SDR, and ATS where present);
prints its mean, standard error (sample standard deviation / sqrt(n)), and the share of
mixtures where B is higher. The model cards' "paired difference per mixture" rows come from
this. Systems are named as in the folder's table.md (e.g. esc50-minilm, runs/x/model).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter
from pathlib import Path


def _scores(folder: Path) -> dict[str, dict[tuple[str, ...], dict[str, float]]]:
    """system -> mixture key -> metric -> value, from folder/per_clip.csv.

    A mixture is keyed by the list's columns before ``system`` and, as the evaluation counts
    them, by its occurrence: a list that holds one mixture twice has it twice here. A torn
    last row (a killed run) is left out, as the evaluation itself does on resuming.
    """
    from querysep.errors import QuerysepError, error_line
    from querysep.evaluation.report import read_per_clip

    path = folder / "per_clip.csv"
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        if "system" not in header:
            raise SystemExit(f"error: {path} has no system column: not a per-clip scores file")
        rows, _ = read_per_clip(path, header)
    except (OSError, ValueError, QuerysepError) as exc:  # missing, undecodable
        raise SystemExit(f"error: cannot read {path}: {error_line(exc) or exc}") from None
    split = header.index("system")
    columns, metrics = header[:split], header[split + 1 :]
    seen: Counter[tuple[str, ...]] = Counter()
    out: dict[str, dict[tuple[str, ...], dict[str, float]]] = {}
    for row in rows:
        mixture = (*(row[c] for c in columns), row["system"])
        key = (*mixture[:-1], str(seen[mixture]))
        seen[mixture] += 1
        values = {m: float(row[m]) for m in metrics if row[m] != ""}
        out.setdefault(row["system"], {})[key] = values
    return out


def paired(base: dict, system: dict) -> dict[str, tuple[float, float, float, int]]:
    """metric -> (mean of system - base, its standard error, share where system is higher, n,
    pairs left out because a score is not finite)."""
    result = {}
    for metric in dict.fromkeys(m for scores in base.values() for m in scores):
        both = [
            system[k][metric] - base[k][metric]
            for k in sorted(base.keys() & system.keys())
            if metric in base[k] and metric in system[k]
        ]
        diffs = [d for d in both if math.isfinite(d)]  # ATS is NaN for a silent output
        if len(diffs) < 2:
            continue
        n = len(diffs)
        mean = sum(diffs) / n
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        result[metric] = (mean, sd / math.sqrt(n), sum(d > 0 for d in diffs) / n, n, len(both) - n)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="querysep evaluate output folders")
    parser.add_argument("--base", required=True, help="the system subtracted (A)")
    parser.add_argument("--system", required=True, help="the system compared with it (B)")
    args = parser.parse_args(argv)
    for folder in args.folders:
        scores = _scores(folder)
        missing = [s for s in (args.base, args.system) if s not in scores]
        if missing:
            known = ", ".join(sorted(scores)) or "none"
            raise SystemExit(f"error: {folder}: no system {missing[0]!r} (systems: {known})")
        print(f"{folder}: {args.system} - {args.base}")
        for metric, (mean, se, share, n, dropped) in paired(
            scores[args.base], scores[args.system]
        ).items():
            note = f" ({dropped} pairs without a finite score left out)" if dropped else ""
            print(f"  {metric:7s} {mean:+.3f} (s.e. {se:.3f}), higher on {share:.0%} of {n}{note}")


if __name__ == "__main__":
    sys.exit(main())
