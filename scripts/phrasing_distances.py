"""How far the held-out ESC-50 captions are from what training conditions on (#17).

    python scripts/phrasing_distances.py

For each class, the MiniLM embeddings of its training texts (the label and the ``train``
and ``more`` captions; ``--parts`` changes the caption parts) and of its ``heldout``
captions. Prints the median distance from a held-out caption to the nearest training text,
to the nearest point on a segment between two training texts (as ``data.query_mix_prob``
draws them: ``querysep.training.module.mix_embeddings`` at 21 weights from 0 to 1), and to
the nearest other training text of the class from each training text. Nothing is trained;
the held-out texts are embedded, never printed.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from querysep.data.recipes.esc50 import builtin_captions
from querysep.models.text.minilm import MiniLMTextEncoder
from querysep.training.module import mix_embeddings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["train", "more"], help="caption parts")
    args = parser.parse_args(argv)
    encoder = MiniLMTextEncoder()
    parts = [builtin_captions(part) for part in args.parts]
    heldout = builtin_captions("heldout")
    weights = torch.linspace(0, 1, 21)
    to_text, to_segment, within = [], [], []
    for category in parts[0]:
        texts = [category.replace("_", " "), *(t for part in parts for t in part[category])]
        train = encoder.encode(texts).float()
        held = encoder.encode(heldout[category]).float()
        to_text.append(torch.cdist(held, train).min(dim=1).values)
        pairs = list(itertools.combinations(range(len(texts)), 2))
        n = len(weights)
        between = torch.cat(
            [mix_embeddings(train[[i] * n], train[[j] * n], weights) for i, j in pairs]
        )
        to_segment.append(torch.cdist(held, between).min(dim=1).values)
        own = torch.cdist(train, train).fill_diagonal_(float("inf"))
        within.append(own.min(dim=1).values)
    text, segment, inside = (torch.cat(d) for d in (to_text, to_segment, within))
    print(f"{len(text)} held-out captions, {len(inside)} training texts ({' + '.join(args.parts)})")
    for what, distances in (
        ("held-out caption to the nearest training text of its class", text),
        ("held-out caption to the nearest point between two of them", segment),
        ("training text to the nearest other training text of its class", inside),
    ):
        print(f"{what}: median {distances.median():.3f}")


if __name__ == "__main__":
    main()
