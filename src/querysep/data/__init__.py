"""Data: clip manifests, dataset recipes, mixing, and torch datasets for training.

The light parts (manifests, mixing) import without torch; the torch datasets live in
:mod:`querysep.data.datasets`.
"""

from __future__ import annotations

from .manifest import (
    AUDIO_EXTENSIONS,
    Clip,
    MixtureRow,
    audio_names,
    find_audio,
    label_to_text,
    read_datafile,
    read_manifest,
    read_mixture_list,
    write_datafile,
    write_manifest,
    write_mixture_list,
)
from .mixing import Mixer, MixParams, fit_length, make_dcase_mixture, plan_mixtures
from .recipes import RECIPES, PrepareResult, SkippedFile

__all__ = [
    "AUDIO_EXTENSIONS",
    "RECIPES",
    "Clip",
    "MixParams",
    "Mixer",
    "MixtureRow",
    "PrepareResult",
    "SkippedFile",
    "audio_names",
    "find_audio",
    "fit_length",
    "label_to_text",
    "make_dcase_mixture",
    "plan_mixtures",
    "read_datafile",
    "read_manifest",
    "read_mixture_list",
    "write_datafile",
    "write_manifest",
    "write_mixture_list",
]
