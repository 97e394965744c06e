"""Separation networks, text encoders and the separator that joins them."""

import importlib

from .irm_ldm import IrmLdm, IrmLdmConfig  # also registers the "irm-ldm" network type
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
    "IrmLdm",
    "IrmLdmConfig",
    "MiniLMTextEncoder",
    "ResUNet",
    "ResUNetConfig",
    "TextEncoder",
    "TextQueriedSeparator",
    "build_text_encoder",
    "register_network",
]


def __getattr__(name: str) -> object:
    # The upstream checkpoint loaders (querysep.models.upstream), imported on first use.
    if name in ("stft", "upstream"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
