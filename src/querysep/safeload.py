"""Reading PyTorch checkpoint files without running pickled code.

Every third-party ``.pt``/``.ckpt`` file (LAION-CLAP, AudioSep, the DCASE baseline) goes
through :func:`load_weights_only`: ``torch.load(weights_only=True)``, so a file that needs a
class or a function to unpickle is refused before any of it runs, and every way a file can
fail to read becomes one :class:`~querysep.errors.CheckpointError` line.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, ModelNotFoundError

__all__ = ["load_weights_only"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_weights_only(path: str | Path, what: str = "PyTorch checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one-line errors.

    Zip-format files (everything ``torch.save`` wrote since PyTorch 1.6) are memory-mapped,
    so a 1-2 GB Lightning checkpoint is not copied into memory before its tensors are used.

    Args:
        path: The file.
        what: What the file should be, for messages (``LAION-CLAP checkpoint``).

    Returns:
        The unpickled object (dicts, lists, tensors and plain values only).

    Raises:
        ModelNotFoundError: No such file (or a folder).
        CheckpointError: Not readable, corrupt, or needs pickled code (never run).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ModelNotFoundError(f"{path} is a folder, not a file ({what})")
    if not path.is_file():
        raise ModelNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read {path} ({what}): file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # torch warns about some files it then refuses
            warnings.simplefilter("ignore")
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # a legacy (non-zip) file cannot be memory-mapped
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"unsupported global:? (?:GLOBAL )?(\S+)", str(exc), re.IGNORECASE)
        if found:
            raise CheckpointError(
                f"{path} needs pickled code to load ({found.group(1)}), which is refused for "
                "safety and never run; only plain weight files are read"
            ) from None
        raise CheckpointError(
            f"cannot read {path}: not a PyTorch checkpoint of plain weights, or corrupt"
        ) from None
    except (KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError):
        # what the unpickler raises on bytes that are no pickle at all (a text file...)
        raise CheckpointError(
            f"cannot read {path}: not a PyTorch checkpoint of plain weights, or corrupt"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        article = "an" if what[:1].lower() in "aeio" else "a"
        raise CheckpointError(
            f"cannot read {path} as {article} {what}: {_first_line(exc)}"
        ) from None
