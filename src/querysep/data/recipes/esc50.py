"""ESC-50: 2000 five-second environmental recordings in 50 classes and 5 folds.

Expected layout (the official archive, or a copy with the CSV next to ``audio/``)::

    ROOT/esc50.csv or ROOT/meta/esc50.csv   filename,fold,target,category,esc10,src_file,take
    ROOT/audio/<filename>                   .wav (or converted, e.g. .flac, with the same stem)
"""

from __future__ import annotations

from pathlib import Path

from ..manifest import Clip, label_to_text
from ._common import AudioIndex, PrepareResult, find_first, probe, read_csv

__all__ = ["prepare_esc50"]

COLUMNS = ("filename", "fold", "category")


def prepare_esc50(root: str | Path, *, check_audio: bool = True) -> PrepareResult:
    """Build the manifest of an ESC-50 copy.

    Each clip gets the caption ``category`` with underscores as spaces (``"chirping
    birds"``), the label ``category`` and the split ``"fold<N>"``. Rows whose audio file is
    missing (e.g. a copy without fold 5) are skipped.

    Args:
        root: The dataset folder.
        check_audio: Read each file's header for duration and sample rate, and skip files
            that cannot be read.

    Returns:
        Clips in CSV order, and the skipped files.

    Raises:
        DataError: No ``esc50.csv``, or it lacks a required column.
    """
    root = Path(root)
    csv_path = find_first(root, ("esc50.csv", "meta/esc50.csv"), "esc50.csv")
    rows = read_csv(csv_path, COLUMNS)
    index = AudioIndex([root / "audio"])
    result = PrepareResult()
    for row in rows:
        filename, category = row["filename"], row["category"]
        clip = Clip(
            id=Path(filename).stem,
            audio=filename,
            captions=[label_to_text(category)],
            labels=[category],
            source="esc50",
            split=f"fold{row['fold']}",
        )
        result.add(*probe(index.find(filename), clip, check_audio=check_audio))
    return result
