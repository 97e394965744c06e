"""Any folder of audio files with captions, as same-name ``.txt`` files or one CSV.

Two layouts::

    ROOT/**/<name>.wav + ROOT/**/<name>.txt    one caption per line of the .txt
    ROOT/**/<name>.wav + CAPTIONS.csv          file_name,caption (a file may have several rows)
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import DataError
from ...textfiles import control_character, read_text
from ..manifest import Clip, unique_id
from ._common import AudioIndex, PrepareResult, probe, read_csv

__all__ = ["metadata_files", "prepare_folder"]


def prepare_folder(
    root: str | Path,
    *,
    captions_csv: str | Path | None = None,
    split: str = "train",
    check_audio: bool = True,
) -> PrepareResult:
    """Build the manifest of a folder of captioned audio files.

    Without ``captions_csv`` every audio file under ``root`` becomes a clip, captioned by
    the non-empty lines of its same-name ``.txt`` file; files without one are kept with no
    captions (usable as interferers, not as targets). With ``captions_csv`` only the files
    it lists are used; ``file_name`` is relative to ``root`` (or a bare file name found
    anywhere under it, if only one file has it). A clip's id is its file name without
    extension; a name met again (in another subfolder, or with another extension) gets
    ``-2``, ``-3``... in path order. Folders carry no class labels.

    Args:
        root: The folder, searched recursively.
        captions_csv: A CSV with columns ``file_name,caption``.
        split: Split name given to every clip.
        check_audio: Read each file's header for duration and sample rate, and skip files
            that cannot be read.

    Returns:
        The clips (sorted by path, or in CSV order) and the skipped files.

    Raises:
        DataError: ``root`` is not a folder, the CSV is missing, lacks a column or has no
            rows, or it names a file by a bare name that several files under ``root`` have.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"not a folder: {root}")
    index = AudioIndex([root], recursive=True)
    result = PrepareResult()
    taken: set[str] = set()
    if captions_csv is None:
        for path in index:
            txt = path.with_suffix(".txt")
            captions = _read_lines(txt) if txt.is_file() else []
            clip = Clip(
                id=unique_id(path.stem, taken),
                audio="",
                captions=captions,
                source="folder",
                split=split,
            )
            result.add(*probe(path, clip, check_audio=check_audio))
        return result
    groups: dict[str, list[str]] = {}
    for row in read_csv(Path(captions_csv), ("file_name", "caption"), filled=("file_name",)):
        captions = groups.setdefault(row["file_name"], [])
        caption = _caption(row["caption"], captions_csv)
        if caption and caption not in captions:
            captions.append(caption)
    if not groups:
        raise DataError(f"{captions_csv}: lists no files (a header and no rows)")
    for name, captions in groups.items():
        path: Path | None = root / name
        if not path.is_file():
            found = index.find_all(name) if os.path.basename(name) == name else []
            if len(found) > 1:  # which one the caption is about cannot be guessed
                shown = ", ".join(p.relative_to(root).as_posix() for p in found[:3])
                raise DataError(
                    f"{captions_csv}: file_name {name!r} names {len(found)} files under {root} "
                    f"({shown}{', ...' if len(found) > 3 else ''}): give its path under {root}"
                )
            path = found[0] if found else None
        clip = Clip(
            id=unique_id(Path(name).stem, taken),
            audio="",
            captions=captions,
            source="folder",
            split=split,
        )
        result.add(*probe(path, clip, check_audio=check_audio, listed_as=name))
    return result


def metadata_files(root: Path) -> list[Path]:
    """None to find under ``root``: :func:`prepare_folder` reads the ``captions_csv`` it is
    given, or the ``.txt`` file beside each audio file."""
    return []


def _read_lines(path: Path) -> list[str]:
    text = read_text(path, "captions file")
    lines = [_caption(line, path) for line in text.splitlines()]
    return list(dict.fromkeys(line for line in lines if line))


def _caption(text: str, where: str | os.PathLike[str]) -> str:
    """``text`` with its whitespace collapsed to single spaces (empty for a blank line).

    Raises:
        DataError: It holds a control character (an escape sequence, a bell...).
    """
    caption = " ".join(text.split())
    control = control_character(caption)
    if control is not None:
        raise DataError(
            f"{where}: caption {caption!r} holds a control character (U+{ord(control):04X})"
        )
    return caption
