"""Audio-text (CLAP-style) models behind one interface, for the ATS score.

``load_clap(spec)`` returns an :class:`AudioTextModel`; ``embed_audio`` and ``embed_text``
give L2-normalised embeddings whose dot product is the audio-text similarity score (ATS).
"""

from .base import REFERENCE_RMS, AudioTextModel
from .registry import DEFAULT_CLAP, ClapInfo, list_clap_models, load_clap, register_clap_loader

__all__ = [
    "DEFAULT_CLAP",
    "REFERENCE_RMS",
    "AudioTextModel",
    "ClapInfo",
    "list_clap_models",
    "load_clap",
    "register_clap_loader",
]
