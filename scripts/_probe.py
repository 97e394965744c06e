"""What the #17 probe scripts share: their mixture-list arguments and their evaluation.

Each probe (``query_snap_probe.py``, ``query_adapter_probe.py``, ``shift_average_probe.py``,
``query_ensemble_probe.py``) scores some systems on a DCASE mixture list into an evaluation
folder and prints its table; run from anywhere, a script's own folder is on ``sys.path``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from querysep.data.recipes.esc50 import builtin_captions
from querysep.evaluation.runner import evaluate


def texts_by_class(parts: list[str]) -> dict[str, list[str]]:
    """Each ESC-50 category's training texts: its label, then the given caption parts'
    captions, without repeats (categories in sorted order)."""
    by_part = [builtin_captions(part) for part in parts]
    return {
        category: list(
            dict.fromkeys([category.replace("_", " ")] + [t for c in by_part for t in c[category]])
        )
        for category in sorted(by_part[0])
    }


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    """``--mixtures``, ``--audio-dir``, ``-o/--output`` and ``--limit``."""
    parser.add_argument("--mixtures", required=True, help="a DCASE mixture list")
    parser.add_argument("--audio-dir", default="../shared/datasets/esc50-16k/audio")
    parser.add_argument("-o", "--output", required=True, help="evaluation folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N mixtures")


def score(args: argparse.Namespace, systems: Sequence, *, baselines: bool = False) -> None:
    """Evaluate ``systems`` on the list ``args`` names and print the table."""
    out = Path(args.output)
    evaluate(
        args.mixtures, args.audio_dir, list(systems), out, limit=args.limit, baselines=baselines
    )
    print((out / "table.md").read_text(encoding="utf-8"))
