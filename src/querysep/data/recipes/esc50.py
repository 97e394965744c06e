"""ESC-50: 2000 five-second environmental recordings in 50 classes and 5 folds.

Expected layout (the official archive, or a copy with the CSV next to ``audio/``)::

    ROOT/esc50.csv or ROOT/meta/esc50.csv   filename,fold,target,category,esc10,src_file,take
    ROOT/audio/<filename>                   .wav (or converted, e.g. .flac, with the same stem)
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from ...errors import ConfigError, DataError
from ..manifest import Clip, label_to_text
from ._common import AudioIndex, PrepareResult, existing, find_first, probe, read_csv

__all__ = ["CAPTION_PARTS", "DEFAULT_ROOT", "builtin_captions", "metadata_files", "prepare_esc50"]

#: Where the workplace keeps ESC-50 at 16 kHz, relative to the working directory: run from
#: the repository root, with the ``shared`` folder beside it (as the recipes in configs/ do).
DEFAULT_ROOT = "../shared/datasets/esc50-16k"

COLUMNS = ("filename", "fold", "category")

#: The ``captions`` choices of :func:`prepare_esc50` and the parts of the builtin captions
#: each adds after the label, in order.
CAPTION_PARTS: dict[str, tuple[str, ...]] = {
    "label": (),
    "builtin": ("train",),
    "builtin+more": ("train", "more"),
    "builtin+more+extra": ("train", "more", "extra"),
}

#: Where the metadata CSV may be, in the order tried.
CSV_NAMES = ("esc50.csv", "meta/esc50.csv")


@cache
def builtin_captions(
    part: Literal["train", "heldout", "more", "extra"] = "train",
) -> dict[str, list[str]]:
    """querysep's natural-language captions of the 50 ESC-50 classes, by category.

    ``train`` captions are for training; ``heldout`` ones are kept for evaluation only and
    never appear among the training captions; ``more`` (2-9 a class) and ``extra`` (0-5 a
    class) are further training phrasings, written later and stored without any word that
    only the ``heldout`` captions use (by a crude stem) and without any run of three words
    of one.
    """
    text = (resources.files("querysep.data") / "resources" / "esc50_captions.json").read_text()
    return json.loads(text)[part]


def prepare_esc50(
    root: str | Path,
    *,
    check_audio: bool = True,
    captions: Literal["label", "builtin", "builtin+more", "builtin+more+extra"] = "label",
) -> PrepareResult:
    """Build the manifest of an ESC-50 copy.

    Each clip gets the caption ``category`` with underscores as spaces (``"chirping
    birds"``), the label ``category`` and the split ``"fold<N>"``. Rows whose audio file is
    missing (e.g. a copy without fold 5) are skipped.

    Args:
        root: The dataset folder.
        check_audio: Read each file's header for duration and sample rate, and skip files
            that cannot be read.
        captions: ``label``: the category text only; ``builtin``: the category text followed
            by querysep's natural training captions of the class (:func:`builtin_captions`);
            ``builtin+more``: those followed by the class's ``more`` captions;
            ``builtin+more+extra``: those followed by its ``extra`` captions.

    Returns:
        Clips in CSV order, and the skipped files.

    Raises:
        DataError: No ``esc50.csv``, it lacks a required column, or a file it names is
            missing but several others have its stem (``x.flac`` and ``x.ogg``).
    """
    parts = CAPTION_PARTS.get(captions)
    if parts is None:
        raise ConfigError(
            f"esc50 captions must be one of {', '.join(map(repr, CAPTION_PARTS))}, not {captions!r}"
        )
    extra: dict[str, list[str]] = {}
    for part in parts:
        for category, texts in builtin_captions(part).items():
            extra.setdefault(category, []).extend(texts)
    root = Path(root)
    csv_path = find_first(root, CSV_NAMES, "esc50.csv")
    rows = read_csv(csv_path, COLUMNS, filled=COLUMNS)
    index = AudioIndex([root / "audio"])
    result = PrepareResult()
    seen: set[str] = set()
    for row in rows:
        filename, category = row["filename"], row["category"]
        if filename in seen:  # two clips of one id: the manifest could not be written
            raise DataError(f"{csv_path}: {filename} is listed twice")
        seen.add(filename)
        if not row["fold"].isdecimal():  # it would become a split "foldx"
            raise DataError(f"{csv_path}: {filename}: fold {row['fold']!r} is not a whole number")
        clip = Clip(
            id=Path(filename).stem,
            audio=filename,
            captions=[label_to_text(category), *extra.get(category, [])],
            labels=[category],
            source="esc50",
            split=f"fold{row['fold']}",
        )
        result.add(*probe(index.find(filename, csv_path), clip, check_audio=check_audio))
    return result


def metadata_files(root: Path) -> list[Path]:
    """The metadata files of an ESC-50 copy that :func:`prepare_esc50` may read."""
    return existing(root, CSV_NAMES)
