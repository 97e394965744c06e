"""Rebuild the ESC-50 fold-4 evaluation lists checked in beside this script.

    querysep prepare esc50 ../shared/datasets/esc50-16k -o esc50.jsonl
    querysep mixtures make esc50.jsonl -n 1000 --split fold4 --seed 2024 \
        -o benchmarks/esc50-fold4.csv
    python benchmarks/make_esc50_lists.py esc50.jsonl

The first list has label queries ("dog", "chirping birds"). This script writes
``benchmarks/esc50-fold4-captions.csv``: the same rows, with each query replaced by one of the
held-out natural-language captions of the source's class (``heldout`` in
``querysep/data/resources/esc50_captions.json``), which never appear among training captions.

Any other label list gets its captions version the same way (the model card's training-fold
diagnostic)::

    python benchmarks/make_esc50_lists.py esc50.jsonl train400.csv train400-captions.csv
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from querysep.data.manifest import read_manifest, read_mixture_list, write_mixture_list

HERE = Path(__file__).resolve().parent


def main() -> None:
    manifest = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("esc50.jsonl")
    source = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "esc50-fold4.csv"
    target = Path(sys.argv[3]) if len(sys.argv) > 3 else HERE / "esc50-fold4-captions.csv"
    labels = {clip.id: clip.labels[0] for clip in read_manifest(manifest)}
    captions = json.loads(
        (resources.files("querysep.data") / "resources" / "esc50_captions.json").read_text()
    )["heldout"]
    rows = read_mixture_list(source)
    rng = np.random.default_rng(2024)
    for row in rows:
        options = captions[labels[row.source]]
        row.caption = options[int(rng.integers(len(options)))]
    write_mixture_list(rows, target)
    print(f"wrote {len(rows)} rows to {target}")


if __name__ == "__main__":
    main()
