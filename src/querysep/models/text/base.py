"""The interface every text (query) encoder implements, and its registry."""

from __future__ import annotations

import abc
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import ConfigError, QueryError
from ...schema import config_error, validate_arguments
from ...textfiles import control_character

__all__ = [
    "MAX_QUERY_CHARS",
    "TextEncoder",
    "build_text_encoder",
    "check_text_encoder_config",
    "register_text_encoder",
    "validate_queries",
]

MAX_QUERY_CHARS = 1000

_REGISTRY: dict[str, Callable[..., TextEncoder]] = {}


def validate_queries(queries: str | Sequence[str]) -> list[str]:
    """Normalise ``queries`` to a non-empty list of usable, stripped strings.

    Raises:
        QueryError: No query, an empty or whitespace-only query, one longer than
            :data:`MAX_QUERY_CHARS` characters, one with a control character (other than
            whitespace, which is collapsed), or one with no letter or digit at all
            (``'!!!'``, an emoji alone: nothing a text encoder can read as a sound).
    """
    if isinstance(queries, (bytes, bytearray)) or not isinstance(queries, (str, Iterable)):
        raise QueryError(f"a query must be text, got {type(queries).__name__}")
    items = [queries] if isinstance(queries, str) else list(queries)
    if not items:
        raise QueryError("no query given: describe a sound, e.g. -q 'a dog barking'")
    out = []
    for q in items:
        if not isinstance(q, str):
            raise QueryError(f"a query must be text, got {type(q).__name__}")
        text = " ".join(q.split())
        if not text:
            raise QueryError("empty query: describe a sound, e.g. 'a dog barking'")
        if len(text) > MAX_QUERY_CHARS:
            raise QueryError(
                f"query of {len(text)} characters is too long (at most {MAX_QUERY_CHARS})"
            )
        if any(unicodedata.category(c) == "Cs" for c in text):  # undecodable argv bytes
            raise QueryError(
                f"query {text.encode('utf-8', 'backslashreplace').decode()!r} is not valid "
                "UTF-8 text"
            )
        control = control_character(text)
        if control is not None:
            raise QueryError(f"query {text!r} holds a control character (U+{ord(control):04X})")
        if not any(unicodedata.category(c)[0] in "LN" for c in text):
            raise QueryError(
                f"query {text!r} has no letter or digit: describe a sound in words, "
                "e.g. 'a dog barking'"
            )
        out.append(text)
    return out


class TextEncoder(nn.Module, abc.ABC):
    """Maps text queries to fixed-size embeddings.

    Subclasses set :attr:`kind` (the registry name), :attr:`dim`, implement
    :meth:`_encode` and :meth:`to_config`. Encoders are frozen by default; ``encode``
    caches embeddings of repeated queries, which makes training on a fixed caption set cheap.
    """

    kind: ClassVar[str] = ""
    #: Constructor arguments that are themselves encoder configs (checked as such).
    nested_encoders: ClassVar[tuple[str, ...]] = ()
    dim: int

    def __init__(self, cache_size: int = 4096) -> None:
        super().__init__()
        self._cache: dict[str, torch.Tensor] = {}
        self._cache_size = cache_size

    @property
    def far_cosine(self) -> float | None:
        """A cosine similarity of two of this encoder's embeddings below which the texts
        are not taken to name the same sound, where it is calibrated (``None`` otherwise):
        a model answering queries as their nearest training text then says when a query
        is far from all of them."""
        return None

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @abc.abstractmethod
    def _encode(self, queries: list[str]) -> torch.Tensor:
        """Embed already validated queries; returns ``(len(queries), dim)`` float32."""

    @abc.abstractmethod
    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable arguments that rebuild this encoder (``kind`` included)."""

    def encode(self, queries: str | Sequence[str]) -> torch.Tensor:
        """Embed queries.

        Args:
            queries: One query or several.

        Returns:
            One float32 embedding per query, on the encoder's device.

        Shape:
            - output: ``(num_queries, dim)``
        """
        items = validate_queries(queries)
        todo = [q for q in dict.fromkeys(items) if q not in self._cache]
        if todo:
            with torch.inference_mode():
                emb = self._encode(todo).detach().float().cpu()
            if len(self._cache) + len(todo) > self._cache_size:
                self._cache.clear()
            for q, e in zip(todo, emb, strict=True):
                self._cache[q] = e.clone()
        out = torch.stack([self._cache[q] for q in items])
        return out.to(self.device)

    def clear_cache(self) -> None:
        self._cache.clear()


def register_text_encoder(kind: str) -> Callable[[type[TextEncoder]], type[TextEncoder]]:
    """Class decorator adding a :class:`TextEncoder` to the registry under ``kind``."""

    def deco(cls: type[TextEncoder]) -> type[TextEncoder]:
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return deco


def check_text_encoder_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``{"kind": ..., **kwargs}`` against the encoder's constructor, loading nothing.

    Returns:
        The constructor's keyword arguments, converted to their annotated types.

    Raises:
        ConfigError: Not a mapping, an unknown kind, or an unknown, missing, wrongly typed or
            out-of-range argument (naming it, with its path through nested encoder configs:
            ``inner.dim``).
    """
    if not isinstance(config, Mapping):
        raise config_error("", f"expected a mapping with a 'kind', got {config!r}")
    args = dict(config)
    kind = args.pop("kind", None)
    if not isinstance(kind, str) or kind not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise config_error("kind", f"unknown text encoder kind {kind!r}; known: {known}")
    checked = validate_arguments(_REGISTRY[kind].__init__, args)
    for key in _REGISTRY[kind].nested_encoders:
        if isinstance(checked.get(key), Mapping):
            try:
                check_text_encoder_config(checked[key])
            except ConfigError as exc:
                raise exc.within("", key) from None
    return checked


def build_text_encoder(config: Mapping[str, Any]) -> TextEncoder:
    """Build an encoder from ``{"kind": ..., **kwargs}`` as written by ``to_config``.

    Raises:
        ConfigError: As :func:`check_text_encoder_config`.
    """
    args = check_text_encoder_config(config)
    return _REGISTRY[str(config["kind"])](**args)
