"""A lookup table of embeddings computed once by another encoder.

Training on a fixed caption set only ever needs those captions' embeddings: computing them
once and training from the table avoids loading (or carrying) the text model itself, e.g. on a
remote GPU machine. A model trained this way is exported with the original encoder's config
(see :func:`save_embedding_table`), since the embeddings are the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ...errors import CheckpointError, ModelNotFoundError, QueryError
from ...fileio import AtomicFile
from .base import TextEncoder, build_text_encoder, register_text_encoder, validate_queries

__all__ = ["PrecomputedTextEncoder", "save_embedding_table"]


def save_embedding_table(encoder: TextEncoder, texts: Sequence[str], path: str | Path) -> Path:
    """Embed ``texts`` with ``encoder`` and save them with the encoder's config.

    The file is safetensors: tensor ``embeddings`` ``(N, dim)``, metadata ``texts`` (JSON list)
    and ``encoder`` (the config that produced them), written atomically.
    """
    items = list(dict.fromkeys(validate_queries(list(texts))))
    emb = encoder.encode(items).float().cpu().contiguous()
    meta = {"texts": json.dumps(items), "encoder": json.dumps(encoder.to_config())}
    path = Path(path)
    with AtomicFile(path) as tmp:
        save_file({"embeddings": emb}, str(tmp), metadata=meta)
    return path


@register_text_encoder("precomputed")
class PrecomputedTextEncoder(TextEncoder):
    """Embeddings looked up in a table written by :func:`save_embedding_table`.

    Args:
        path: The safetensors table.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = str(path)
        if not Path(self.path).is_file():
            raise ModelNotFoundError(f"no embedding table at {self.path}")
        try:
            with safe_open(self.path, framework="pt") as fh:
                meta = fh.metadata() or {}
                table = fh.get_tensor("embeddings")
            texts = json.loads(meta.get("texts", "[]"))
            self.source_config: dict[str, Any] = json.loads(meta.get("encoder", "{}"))
        except Exception as exc:  # safetensors raises its own types; bad metadata is JSON's
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise CheckpointError(f"cannot read embedding table {self.path}: {reason}") from None
        self.index = {t: i for i, t in enumerate(texts)}
        self.register_buffer("table", table.float(), persistent=False)
        self.dim = int(table.shape[1])

    def _encode(self, queries: list[str]) -> torch.Tensor:
        missing = [q for q in queries if q not in self.index]
        if missing:
            raise QueryError(
                f"query {missing[0]!r} is not in the precomputed embedding table {self.path}"
            )
        return self.table[[self.index[q] for q in queries]]

    def source_encoder(self) -> TextEncoder:
        """Rebuild the encoder that computed the table."""
        return build_text_encoder(self.source_config)

    def to_config(self) -> dict[str, Any]:
        # as named: a table serves training on another machine (scripts/gpu_env.sh names it
        # relative to the repository there), and scripts/use_source_encoder.py, run here on
        # the exported model, finds it by that name
        return {"kind": self.kind, "path": self.path}
