"""Reading the text files querysep is given (manifests, mixture lists, captions, metadata).

Every reader goes through :func:`read_text`, so a file that is missing, a folder, unreadable,
binary or not UTF-8 gives the same one-line :class:`~querysep.errors.QuerysepError` naming
the file, instead of a ``UnicodeDecodeError`` traceback from deep inside a parser.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from .errors import DataError, QuerysepError

__all__ = ["control_character", "read_text"]


def control_character(text: str) -> str | None:
    """The first control character of ``text`` (Unicode category Cc: an escape, a bell, a
    NUL; whitespace counts too, so collapse it first), or ``None``: such text is not a
    caption or a query, and it can rewrite a terminal that prints it."""
    return next((c for c in text if unicodedata.category(c) == "Cc"), None)


def read_text(
    path: str | os.PathLike[str],
    what: str,
    *,
    error: type[QuerysepError] = DataError,
    fallback_encoding: str | None = None,
) -> str:
    """Read a whole UTF-8 text file (a leading byte-order mark is dropped).

    Args:
        path: The file.
        what: What the file is, for messages: ``"manifest"``, ``"mixture list"``...
        error: The exception class raised for each problem.
        fallback_encoding: Decode with this encoding when the file is not UTF-8 instead of
            failing; only for dataset files known to come in a legacy encoding (some Clotho
            metadata is Latin-1). Binary files are refused all the same.

    Returns:
        The text, with line endings as they are in the file.

    Raises:
        QuerysepError: (of class ``error``) The file is missing, is a folder, cannot be
            read, holds NUL bytes (binary data or UTF-16) or is not UTF-8.
    """
    p = Path(path)
    if p.is_dir():
        raise error(f"{what} is a folder, not a file: {p}")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} not found: {p}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise error(f"{what} {p} is not UTF-8 text: it holds NUL bytes (a binary file, or UTF-16)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if fallback_encoding is not None:
            return data.decode(fallback_encoding)
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{what} {p} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            "save it as UTF-8"
        ) from None
