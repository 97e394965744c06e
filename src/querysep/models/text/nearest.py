"""Queries answered with the nearest of the texts a separator was trained on.

A separator conditioned on sentence embeddings answers best the few phrasings per class it
trained on: a new phrasing of a known sound lands in the right region of the embedding
space, but between those points, where the network's answer is weaker (the esc50-minilm
model card, "Levers for v2", measures it). :class:`NearestTextEncoder` wraps the encoder the
network was trained with and replaces each query's embedding by that of the nearest
(cosine) text of a fixed set, the training queries: a training text is its own nearest, so
those queries are unchanged, and every other query becomes one the network knows.

It also maps a query outside the training classes to the nearest training text, so a model
with it separates only what it was trained on (as it could only do well before).
``querysep train`` builds it with ``model.query_bank: true`` from the texts of the training
data; ``Separator(..., snap_queries=False)`` (``--no-snap``) uses the inner encoder instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from .base import TextEncoder, build_text_encoder, register_text_encoder, validate_queries

__all__ = ["NearestTextEncoder", "plain_encoder"]


def plain_encoder(encoder: TextEncoder) -> TextEncoder:
    """The encoder that embeds queries as they are: a nearest-text encoder's inner one, or
    ``encoder`` itself."""
    return encoder.inner if isinstance(encoder, NearestTextEncoder) else encoder


@register_text_encoder("nearest")
class NearestTextEncoder(TextEncoder):
    """``inner``'s embedding of the text of ``texts`` nearest to each query.

    Args:
        inner: The encoder's config (``{"kind": "minilm", ...}``), or the encoder itself.
        texts: The texts answered with (repeats are dropped, order kept); the embeddings of
            the texts are computed on the first query.

    Raises:
        ConfigError: No texts, an unusable text, or an inner encoder that is itself a
            ``nearest`` one.
    """

    nested_encoders = ("inner",)

    def __init__(self, inner: Mapping[str, Any] | TextEncoder, texts: Sequence[str]) -> None:
        super().__init__()
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise ConfigError("a nearest-text encoder needs a non-empty list of texts")
        try:
            self.texts = list(dict.fromkeys(validate_queries(list(texts))))
        except Exception as exc:  # a QueryError names the text
            raise ConfigError(f"nearest-text encoder texts: {exc}") from None
        encoder = inner if isinstance(inner, TextEncoder) else build_text_encoder(inner)
        if isinstance(encoder, NearestTextEncoder):
            raise ConfigError("a nearest-text encoder cannot wrap another one")
        self.inner = encoder
        self.dim = encoder.dim
        # the texts' embeddings as the inner encoder gives them, and at unit length
        self._embeddings: tuple[torch.Tensor, torch.Tensor] | None = None

    def embeddings(self) -> torch.Tensor:
        """The inner encoder's embeddings of :attr:`texts` (computed on first use).

        Shape:
            - output: ``(len(texts), dim)``, float32, on the inner encoder's device
        """
        return self._bank()[0]

    def _bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._embeddings is None:
            raw = self.inner.encode(self.texts).float()
            self._embeddings = raw, F.normalize(raw, dim=-1)
        return self._embeddings

    def nearest(self, queries: str | Sequence[str]) -> list[str]:
        """The text each query is answered with."""
        return [self.texts[i] for i in self._nearest_index(validate_queries(queries)).tolist()]

    def _nearest_index(self, queries: list[str]) -> torch.Tensor:
        emb = F.normalize(self.inner.encode(queries).float(), dim=-1)
        return (emb @ self._bank()[1].to(emb.device).T).argmax(dim=-1)

    def _encode(self, queries: list[str]) -> torch.Tensor:
        raw = self.embeddings()
        return raw[self._nearest_index(queries).to(raw.device)]

    def to_config(self) -> dict[str, Any]:
        return {"kind": "nearest", "inner": self.inner.to_config(), "texts": list(self.texts)}
