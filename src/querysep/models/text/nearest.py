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

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from ...errors import CheckpointError, ConfigError
from .base import TextEncoder, build_text_encoder, register_text_encoder, validate_queries

__all__ = ["BANK_NAME", "NearestTextEncoder", "QueryMatch", "plain_encoder"]

#: The file of a model folder that holds its bank's embeddings, so that a process does not
#: embed every text on its first query (see :meth:`NearestTextEncoder.save_embeddings`).
BANK_NAME = "query_bank.safetensors"


@dataclass(frozen=True)
class QueryMatch:
    """How a query was answered: the text, its cosine similarity to the query, and whether
    the query is far from every text the model knows (see :meth:`NearestTextEncoder.matches`)."""

    text: str
    cosine: float
    far: bool | None  # None: the encoder has no calibrated threshold (far_cosine)


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

    @property
    def has_embeddings(self) -> bool:
        """Whether the texts' embeddings are at hand (read from a model folder, or computed),
        so that no query embeds them."""
        return self._embeddings is not None

    def _bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._embeddings is None:
            raw = self.inner.encode(self.texts).float()
            self._embeddings = raw, F.normalize(raw, dim=-1)
        elif self._embeddings[0].device != self.inner.device:  # read, then the model moved
            raw, unit = self._embeddings
            self._embeddings = raw.to(self.inner.device), unit.to(self.inner.device)
        return self._embeddings

    @property
    def texts_sha256(self) -> str:
        """The SHA-256 (hex) of :attr:`texts`, in order: what the bank answers with."""
        texts = json.dumps(self.texts, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(texts).hexdigest()

    def _identity(self) -> dict[str, str]:
        """What embeddings saved for this encoder must have been computed for."""
        inner = json.dumps(self.inner.to_config(), sort_keys=True)
        return {"texts_sha256": self.texts_sha256, "inner": inner}

    def save_embeddings(self, path: str | Path, save_id: str) -> None:
        """Write the texts' embeddings to ``path`` (safetensors), marked with what they were
        computed for and with ``save_id``, the save of the model folder they belong to.

        The caller writes ``path`` atomically (it is one of a model folder's files)."""
        metadata = {**self._identity(), "save_id": save_id}
        save_file({"embeddings": self.embeddings().cpu().contiguous()}, str(path), metadata)

    def load_embeddings(self, path: str | Path, save_id: str | None) -> bool:
        """Use the embeddings :meth:`save_embeddings` wrote to ``path``, if they were saved
        with ``save_id`` for these texts and this inner encoder; otherwise (a stale file:
        another save, other texts or encoder) leave them to be computed on the first query.

        Returns:
            Whether they were used.

        Raises:
            CheckpointError: The file cannot be read, or holds embeddings of the wrong shape
                or with non-finite values for what it says it was computed for.
        """
        try:
            with safe_open(str(path), framework="pt") as fh:
                metadata = fh.metadata() or {}
                if metadata != {**self._identity(), "save_id": save_id}:
                    return False
                raw = fh.get_tensor("embeddings").float()
        except Exception as exc:  # safetensors raises its own error types
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise CheckpointError(f"cannot read {path}: {reason}") from None
        if raw.shape != (len(self.texts), self.dim) or not torch.isfinite(raw).all():
            raise CheckpointError(
                f"{path} is damaged: embeddings of shape {tuple(raw.shape)} for "
                f"{len(self.texts)} texts of dimension {self.dim}; delete it (they are then "
                "computed on the first query)"
            )
        self._embeddings = raw, F.normalize(raw, dim=-1)
        return True

    def nearest(self, queries: str | Sequence[str]) -> list[str]:
        """The text each query is answered with."""
        return [match.text for match in self.matches(queries)]

    def matches(self, queries: str | Sequence[str]) -> list[QueryMatch]:
        """The text each query is answered with, its cosine similarity to the query, and
        whether the query is far from every text (below the inner encoder's
        :attr:`~querysep.models.text.TextEncoder.far_cosine`; ``None`` where that is)."""
        index, cosine = self._nearest_index(validate_queries(queries))
        far = self.inner.far_cosine
        return [
            QueryMatch(self.texts[i], c, None if far is None else c < far)
            for i, c in zip(index.tolist(), cosine.tolist(), strict=True)
        ]

    def _nearest_index(self, queries: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The index of each query's nearest text, and its cosine similarity."""
        emb = F.normalize(self.inner.encode(queries).float(), dim=-1)
        best = (emb @ self._bank()[1].to(emb.device).T).max(dim=-1)
        return best.indices, best.values

    def _encode(self, queries: list[str]) -> torch.Tensor:
        raw = self.embeddings()
        return raw[self._nearest_index(queries)[0].to(raw.device)]

    def to_config(self) -> dict[str, Any]:
        return {"kind": "nearest", "inner": self.inner.to_config(), "texts": list(self.texts)}
