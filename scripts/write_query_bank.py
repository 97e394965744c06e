"""Write ``query_bank.safetensors`` into a model folder saved before that file existed.

    python scripts/write_query_bank.py src/querysep/weights/esc50-minilm

A model whose text encoder answers queries with the nearest of a bank of texts (``kind:
nearest``) embeds every text of the bank on a process's first query unless its folder holds
their embeddings; ``save_pretrained`` writes them since 2026-12-05. This writes them for a
folder saved earlier, marked with the save id of its ``config.json``, leaving
``config.json`` and ``model.safetensors`` untouched (the bundled esc50-minilm's came from
this, so its weights kept their SHA-256).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from querysep.fileio import AtomicFile
from querysep.models.separator import SAVE_ID_KEY, TextQueriedSeparator
from querysep.models.text import BANK_NAME, NearestTextEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a querysep model folder")
    args = parser.parse_args()
    model = TextQueriedSeparator.from_pretrained(args.folder)
    encoder = model.text_encoder
    if not isinstance(encoder, NearestTextEncoder):
        raise SystemExit(f"error: {args.folder} answers queries as they are: it has no bank")
    config = json.loads((args.folder / "config.json").read_text(encoding="utf-8"))
    save_id = config.get(SAVE_ID_KEY)
    if not isinstance(save_id, str):
        raise SystemExit(f"error: {args.folder} has no save id: save the model again instead")
    with AtomicFile(args.folder / BANK_NAME) as tmp:
        encoder.save_embeddings(tmp, save_id)
    again = TextQueriedSeparator.from_pretrained(args.folder).text_encoder  # reads them back
    if not (isinstance(again, NearestTextEncoder) and again.has_embeddings):
        raise SystemExit(f"error: {args.folder / BANK_NAME} was written but is not used")
    print(f"wrote {args.folder / BANK_NAME} ({len(encoder.texts)} texts)")


if __name__ == "__main__":
    main()
