"""Text (query) encoders behind one interface: ``encode(list[str]) -> (batch, dim)``."""

from .base import (
    MAX_QUERY_CHARS,
    TextEncoder,
    build_text_encoder,
    check_text_encoder_config,
    register_text_encoder,
    validate_queries,
)
from .clap import ClapTextEncoder
from .hashing import HashingTextEncoder
from .minilm import MiniLMTextEncoder
from .nearest import BANK_NAME, NearestTextEncoder, QueryMatch, plain_encoder
from .precomputed import PrecomputedTextEncoder, save_embedding_table

__all__ = [
    "BANK_NAME",
    "MAX_QUERY_CHARS",
    "ClapTextEncoder",
    "HashingTextEncoder",
    "MiniLMTextEncoder",
    "NearestTextEncoder",
    "PrecomputedTextEncoder",
    "QueryMatch",
    "TextEncoder",
    "build_text_encoder",
    "check_text_encoder_config",
    "plain_encoder",
    "register_text_encoder",
    "save_embedding_table",
    "validate_queries",
]
