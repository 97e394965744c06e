"""Text (query) encoders behind one interface: ``encode(list[str]) -> (batch, dim)``."""

from .base import (
    MAX_QUERY_CHARS,
    TextEncoder,
    build_text_encoder,
    register_text_encoder,
    validate_queries,
)
from .clap import ClapTextEncoder
from .hashing import HashingTextEncoder
from .minilm import MiniLMTextEncoder

__all__ = [
    "MAX_QUERY_CHARS",
    "ClapTextEncoder",
    "HashingTextEncoder",
    "MiniLMTextEncoder",
    "TextEncoder",
    "build_text_encoder",
    "register_text_encoder",
    "validate_queries",
]
