"""Separation networks, text encoders and the separator that joins them."""

from .resunet import ResUNet, ResUNetConfig
from .separator import TextQueriedSeparator, register_network
from .text import (
    ClapTextEncoder,
    HashingTextEncoder,
    MiniLMTextEncoder,
    TextEncoder,
    build_text_encoder,
)

__all__ = [
    "ClapTextEncoder",
    "HashingTextEncoder",
    "MiniLMTextEncoder",
    "ResUNet",
    "ResUNetConfig",
    "TextEncoder",
    "TextQueriedSeparator",
    "build_text_encoder",
    "register_network",
]
