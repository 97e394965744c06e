"""Dataset recipes: pure ``prepare_<name>(root, ...) -> PrepareResult`` functions.

Each recipe reads a dataset's own metadata in its published layout and returns the clips
whose audio exists, plus the files it had to skip; ``querysep prepare NAME ROOT`` wraps
them. :data:`RECIPES` maps the command-line names to the functions, and
:func:`metadata_files` lists the metadata files a recipe would read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import audiocaps, clotho, dcase2024_val, esc50, folder, fsd50k
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
    "metadata_files",
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

_METADATA: dict[str, Callable[[Path], list[Path]]] = {
    "audiocaps": audiocaps.metadata_files,
    "clotho": clotho.metadata_files,
    "dcase2024-val": dcase2024_val.metadata_files,
    "esc50": esc50.metadata_files,
    "folder": folder.metadata_files,
    "fsd50k": fsd50k.metadata_files,
}


def metadata_files(name: str, root: str | Path) -> list[Path]:
    """The metadata files (CSV, JSON) of the dataset in ``root`` that recipe ``name`` may
    read: files that a manifest must never be written over. Cheap: no audio is scanned.

    Args:
        name: A key of :data:`RECIPES`.
        root: The dataset folder.

    Returns:
        The existing files, some of which the recipe may not need (e.g. a second copy of
        the ESC-50 CSV).
    """
    return _METADATA[name](Path(root))
