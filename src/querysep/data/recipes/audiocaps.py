"""AudioCaps: 10 s AudioSet (YouTube) segments with human captions.

AudioCaps ships captions only; the audio must already be local. Expected layout::

    ROOT/{train,val,test}.csv   audiocap_id,youtube_id,start_time,caption  (or ROOT/dataset/)
    ROOT/**/<youtube_id>.wav  or  ROOT/**/<youtube_id>_<start_time>.wav    (any audio format)

Rows sharing a YouTube segment (val/test have five captions per clip) become one clip.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..manifest import Clip
from ._common import AudioIndex, PrepareResult, existing, probe, read_csv

__all__ = ["metadata_files", "prepare_audiocaps"]

SPLITS = ("train", "val", "test")


def prepare_audiocaps(root: str | Path, *, check_audio: bool = True) -> PrepareResult:
    """Build the manifest of a local AudioCaps copy.

    Audio files are looked up anywhere under ``root`` as ``<youtube_id>_<start>`` (start as
    written in the CSV, or as an integer) first, then ``<youtube_id>``. Clips get the
    split of their CSV (``"train"``, ``"val"``, ``"test"``), all their captions, and no
    labels.

    Args:
        root: The dataset folder.
        check_audio: Read each file's header for duration and sample rate, and skip files
            that cannot be read.

    Returns:
        Clips in CSV order (first appearance), and the skipped segments.

    Raises:
        DataError: No split CSV found, or a segment's file name is that of several files
            under ``root`` (which copy is meant cannot be guessed).
    """
    root = Path(root)
    csvs = [(path.stem, path) for path in metadata_files(root)]
    if not csvs:
        raise DataError(f"no AudioCaps CSV ({', '.join(s + '.csv' for s in SPLITS)}) in {root}")
    index = AudioIndex([root], recursive=True)
    result = PrepareResult()
    for split, csv_path in csvs:
        rows = read_csv(csv_path, ("youtube_id", "start_time", "caption"))
        groups: dict[tuple[str, str], list[str]] = {}
        for row in rows:
            captions = groups.setdefault((row["youtube_id"], row["start_time"]), [])
            caption = " ".join(row["caption"].split())
            if caption and caption not in captions:
                captions.append(caption)
        for (youtube_id, start), captions in groups.items():
            path = _find_segment(index, youtube_id, start, csv_path)
            clip = Clip(
                id=path.stem if path is not None else f"{youtube_id}_{start}",
                audio="",
                captions=captions,
                source="audiocaps",
                split=split,
            )
            result.add(
                *probe(path, clip, check_audio=check_audio, listed_as=f"{youtube_id}_{start}")
            )
    return result


def metadata_files(root: Path) -> list[Path]:
    """The split CSVs of an AudioCaps copy, which :func:`prepare_audiocaps` reads."""
    return existing(
        root, [f"{folder}{split}.csv" for split in SPLITS for folder in ("", "dataset/")]
    )


def _find_segment(index: AudioIndex, youtube_id: str, start: str, listed_in: Path) -> Path | None:
    names = [f"{youtube_id}_{start}"]
    try:
        seconds = float(start)
    except ValueError:
        seconds = None
    if seconds is not None and seconds.is_integer():
        names += [f"{youtube_id}_{int(seconds)}", f"{youtube_id}_{seconds}"]
    names.append(youtube_id)
    for name in names:
        path = index.find_stem(name, listed_in)
        if path is not None:
            return path
    return None
