"""A weight-free text encoder: hashed word and character n-grams.

Deterministic across processes and machines (it hashes with CRC32, not Python's salted
``hash``), needs no download and no weights, and gives similar embeddings to queries that
share words. It is meant for tests and smoke runs (the reserved ``test-tiny`` model), not for
real separation quality.
"""

from __future__ import annotations

import re
import zlib
from typing import Annotated, Any

import torch
from pydantic import Field

from .base import TextEncoder, register_text_encoder

__all__ = ["HashingTextEncoder"]


@register_text_encoder("hashing")
class HashingTextEncoder(TextEncoder):
    """Bag of hashed words and character trigrams, L2-normalised.

    Args:
        dim: Embedding size.
    """

    def __init__(self, dim: Annotated[int, Field(ge=1, le=65536)] = 64) -> None:
        super().__init__()
        self.dim = int(dim)

    def _features(self, text: str) -> list[str]:
        words = re.findall(r"[a-z0-9]+", text.lower())
        grams = [f"w:{w}" for w in words]
        for w in words:
            padded = f"#{w}#"
            grams += [f"c:{padded[i : i + 3]}" for i in range(max(1, len(padded) - 2))]
        return grams or ["<empty>"]

    def _encode(self, queries: list[str]) -> torch.Tensor:
        out = torch.zeros(len(queries), self.dim)
        for row, text in enumerate(queries):
            for gram in self._features(text):
                h = zlib.crc32(gram.encode("utf-8"))
                out[row, h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0
        return torch.nn.functional.normalize(out, dim=-1)

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim}
