"""Write the MiniLM embeddings of every caption in a manifest to a table file.

    python scripts/embed_captions.py MANIFEST.jsonl OUT.safetensors

The table (``querysep.models.text.PrecomputedTextEncoder``) lets a machine without the MiniLM
weights train on those captions; scripts/train_default_gpu.sh uses it.
"""

from __future__ import annotations

import sys

from querysep.data.manifest import read_manifest
from querysep.models.text import MiniLMTextEncoder, save_embedding_table


def main() -> None:
    manifest, out = sys.argv[1], sys.argv[2]
    texts = sorted({text for clip in read_manifest(manifest) for text in clip.texts()})
    save_embedding_table(MiniLMTextEncoder(), texts, out)
    print(f"wrote {len(texts)} caption embeddings to {out}")


if __name__ == "__main__":
    main()
