"""Dataset recipes: pure ``prepare_<name>(root, ...) -> PrepareResult`` functions.

Each recipe reads a dataset's own metadata in its published layout and returns the clips
whose audio exists, plus the files it had to skip; ``querysep prepare NAME ROOT`` wraps
them. :data:`RECIPES` maps the command-line names to the functions.
"""

from __future__ import annotations

from collections.abc import Callable

from ._common import PrepareResult, SkippedFile
from .audiocaps import prepare_audiocaps
from .clotho import prepare_clotho
from .dcase2024_val import prepare_dcase2024_val
from .esc50 import prepare_esc50
from .folder import prepare_folder
from .fsd50k import prepare_fsd50k

__all__ = [
    "RECIPES",
    "PrepareResult",
    "SkippedFile",
    "prepare_audiocaps",
    "prepare_clotho",
    "prepare_dcase2024_val",
    "prepare_esc50",
    "prepare_folder",
    "prepare_fsd50k",
]

#: Recipe name (as typed after ``querysep prepare``) -> recipe function.
RECIPES: dict[str, Callable[..., PrepareResult]] = {
    "audiocaps": prepare_audiocaps,
    "clotho": prepare_clotho,
    "dcase2024-val": prepare_dcase2024_val,
    "esc50": prepare_esc50,
    "folder": prepare_folder,
    "fsd50k": prepare_fsd50k,
}
