"""Clotho (v2): 15-30 s Freesound clips with five crowd-sourced captions each.

Expected layout (the Zenodo archives extracted into one folder)::

    ROOT/clotho_captions_<split>.csv    file_name,caption_1,...,caption_5
    ROOT/clotho_metadata_<split>.csv    file_name,keywords (';'-separated),...   (optional)
    ROOT/<split>/<file_name>            audio (or ROOT/clotho_audio_<split>/, ROOT/audio/<split>/)

with ``<split>`` one of ``development``, ``validation``, ``evaluation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...errors import DataError
from ..manifest import Clip
from ._common import AudioIndex, PrepareResult, probe, read_csv

__all__ = ["metadata_files", "prepare_clotho"]

PREFIX = "clotho_captions_"
METADATA_PREFIX = "clotho_metadata_"


def prepare_clotho(
    root: str | Path, *, splits: Sequence[str] | None = None, check_audio: bool = True
) -> PrepareResult:
    """Build the manifest of a Clotho copy.

    Clips keep Clotho's split names (``"development"``, ``"validation"``, ``"evaluation"``),
    their non-empty captions in column order, and the metadata keywords. Clotho has no class
    labels, so :attr:`Clip.labels` stays empty.

    Args:
        root: The dataset folder.
        splits: Splits to read (default: every ``clotho_captions_<split>.csv`` found).
        check_audio: Read each file's header for duration and sample rate, and skip files
            that cannot be read.

    Returns:
        Clips grouped by split in CSV order, and the skipped files.

    Raises:
        DataError: No captions CSV for a requested split (or none at all), or a file it
            names is in more than one of the split's audio folders.
    """
    root = Path(root)
    found = sorted(p.stem[len(PREFIX) :] for p in root.glob(f"{PREFIX}*.csv"))
    if splits is None:
        if not found:
            raise DataError(f"no {PREFIX}<split>.csv in {root}")
        splits = found
    result = PrepareResult()
    for split in splits:
        listed_in = root / f"{PREFIX}{split}.csv"
        rows = read_csv(listed_in, ("file_name",), latin1_fallback=True)
        keywords = _read_keywords(root / f"{METADATA_PREFIX}{split}.csv")
        index = AudioIndex([root / split, root / f"clotho_audio_{split}", root / "audio" / split])
        for row in rows:
            name = row["file_name"]
            captions = [
                " ".join(value.split())
                for key, value in row.items()
                if key.startswith("caption") and value.strip()
            ]
            clip = Clip(
                id=Path(name).stem,
                audio=name,
                captions=captions,
                keywords=keywords.get(name, []),
                source="clotho",
                split=split,
            )
            result.add(*probe(index.find(name, listed_in), clip, check_audio=check_audio))
    return result


def metadata_files(root: Path) -> list[Path]:
    """The captions and metadata CSVs of a Clotho copy, which :func:`prepare_clotho` reads
    (those of the splits it is asked for)."""
    return sorted(root.glob(f"{PREFIX}*.csv")) + sorted(root.glob(f"{METADATA_PREFIX}*.csv"))


def _read_keywords(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    rows = read_csv(path, ("file_name", "keywords"), latin1_fallback=True)
    return {
        row["file_name"]: [k.strip() for k in row["keywords"].split(";") if k.strip()]
        for row in rows
    }
