"""Turn a model trained from a precomputed embedding table into one with the real encoder.

    python scripts/use_source_encoder.py TRAINED_MODEL_DIR OUT_DIR

The network weights are copied unchanged; config.json's text encoder becomes the encoder that
computed the table (recorded in the table), after checking that it reproduces every embedding
of the table (max abs difference below 1e-5).
"""

from __future__ import annotations

import sys

from querysep.models.separator import TextQueriedSeparator
from querysep.models.text import PrecomputedTextEncoder


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    model = TextQueriedSeparator.from_pretrained(src)
    table = model.text_encoder
    if not isinstance(table, PrecomputedTextEncoder):
        raise SystemExit(f"{src} does not use a precomputed embedding table")
    source = table.source_encoder()
    texts = list(table.index)
    diff = (table.encode(texts) - source.encode(texts)).abs().max().item()
    if diff > 1e-5:
        raise SystemExit(f"the source encoder does not reproduce the table (max diff {diff:.2e})")
    model.metadata.pop("path", None)
    TextQueriedSeparator(model.net, source, model.metadata).save_pretrained(dst)
    print(f"wrote {dst} ({len(texts)} embeddings agree to {diff:.1e})")


if __name__ == "__main__":
    main()
