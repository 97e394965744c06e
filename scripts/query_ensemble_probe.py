"""Score the default model with each output averaged over texts of the query's class (#17 probe).

    python scripts/query_ensemble_probe.py --ks 3 99 --limit 300 \
        --mixtures benchmarks/esc50-fold4.csv -o runs/eval/qens-fold4-300

The bundled esc50-minilm answers a query as the nearest of its training texts, about 11 a
class (the label and its ``train`` and ``more`` captions). Each of them conditions the
network a little differently, so averaging the outputs for several texts of the class is an
ensemble that shares one set of weights, at k times the compute. For each mixture this
separates with the text the query is answered as and the next ``k - 1`` texts of its class
(in the captions file's order; a k above the class's count takes them all), and averages the
outputs. The model as it is (``k=1``) is scored in the same run, for
``scripts/paired_difference.py``. The esc50-minilm model card ("Levers for v2") shows the
outcome.
"""

from __future__ import annotations

import argparse

import numpy as np
from _probe import add_list_arguments, score, texts_by_class

from querysep.evaluation.systems import ModelSystem


def class_texts(parts: list[str]) -> dict[str, list[str]]:
    """Each training text -> the texts of its class (label first, then the parts' captions)."""
    groups: dict[str, list[str]] = {}
    for group in texts_by_class(parts).values():
        for text in group:
            groups.setdefault(text, group)
    return groups


class ClassEnsemble:
    """The default model's outputs for ``k`` texts of the query's class, averaged."""

    def __init__(self, k: int, groups: dict[str, list[str]]) -> None:
        self.model = ModelSystem(name=f"class texts k={k}")
        self.name, self.sample_rate = self.model.name, self.model.sample_rate
        self.k, self.groups = k, groups

    def separate(
        self, mixture: np.ndarray, sample_rate: int, query: str, *, target: np.ndarray | None
    ) -> np.ndarray:
        (text,) = self.model.separator.answered_as([query]) or [query]
        texts = [text, *(t for t in self.groups[text] if t != text)][: self.k]
        outs = [self.model.separate(mixture, sample_rate, t, target=None) for t in texts]
        return np.mean(outs, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[3, 99], help="values of k > 1")
    parser.add_argument("--parts", nargs="+", default=["train", "more"], help="caption parts")
    add_list_arguments(parser)
    args = parser.parse_args()
    if any(k < 2 for k in args.ks):
        raise SystemExit("error: --ks takes values of 2 or more (k = 1 is always scored)")
    groups = class_texts(args.parts)
    systems = [ModelSystem(name="k=1"), *(ClassEnsemble(k, groups) for k in args.ks)]
    score(args, systems)


if __name__ == "__main__":
    main()
