"""Score a separator with each query replaced by its nearest training text (#17 probe).

    python scripts/query_snap_probe.py esc50-minilm \
        --mixtures benchmarks/esc50-fold4-captions.csv -o runs/eval/snap-captions

The default model loses 1.3 dB SDRi on phrasings it never trained on, though their MiniLM
embeddings mostly lie nearest their own class. Mixing queries between training phrasings
(``data.query_mix_prob``) and pulling them onto class means (``query_adapter_probe.py``)
both failed: the network answers the points it trained on, and neither puts an unseen
phrasing on one. This probe does: each query's MiniLM embedding is replaced by that of the
training text nearest to it (cosine, :class:`querysep.models.text.NearestTextEncoder`), from
the texts the esc50 recipe trains the model on (each class's label and the caption parts
given by ``--parts``, default ``train more``: the stage-2 recipe's). A training text is its
own nearest, so label queries are unchanged. Nothing is retrained and no held-out caption is
read. The model with its queries as they are (``snap_queries=False``) is scored in the same
run (for ``scripts/paired_difference.py``). The esc50-minilm model card ("Levers for v2")
shows its output; the bundled model has answered this way by default since 2026-12-05.
"""

from __future__ import annotations

import argparse

from _probe import add_list_arguments, score, texts_by_class

from querysep.evaluation.systems import ModelSystem
from querysep.models.text import NearestTextEncoder, plain_encoder


def training_texts(parts: list[str]) -> list[str]:
    """The labels and the given caption parts, class by class, without repeats."""
    return list(dict.fromkeys(t for group in texts_by_class(parts).values() for t in group))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a separator: name, folder or kind:path")
    parser.add_argument("--parts", nargs="+", default=["train", "more"], help="caption parts")
    add_list_arguments(parser)
    args = parser.parse_args()
    plain = ModelSystem(args.model, name=f"{args.model} (queries as they are)")
    plain.separator.snap_queries = False  # a bundled bank too is left out
    system = ModelSystem(args.model, name=f"{args.model} + snapped queries")
    model = system.separator.model
    model.text_encoder = NearestTextEncoder(
        plain_encoder(model.text_encoder), training_texts(args.parts)
    )
    score(args, [plain, system])


if __name__ == "__main__":
    main()
