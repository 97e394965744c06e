"""FSD50K: 51k Freesound clips with weak labels from 200 AudioSet classes.

Expected layout (the Zenodo archives extracted into one folder)::

    ROOT/FSD50K.ground_truth/dev.csv    fname,labels (','-separated),mids,split (train/val)
    ROOT/FSD50K.ground_truth/eval.csv   fname,labels,mids
    ROOT/FSD50K.metadata/dev_clips_info_FSD50K.json    {id: {title, description, tags, ...}}
    ROOT/FSD50K.metadata/eval_clips_info_FSD50K.json   (both optional)
    ROOT/FSD50K.dev_audio/<fname>.wav, ROOT/FSD50K.eval_audio/<fname>.wav

The ``FSD50K.*`` folders may also sit directly in ``ROOT`` without their prefix folder
(``ROOT/dev.csv``, ``ROOT/dev_audio/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...textfiles import read_text
from ..manifest import Clip, label_to_text
from ._common import AudioIndex, PrepareResult, existing, find_first, probe, read_csv

__all__ = ["metadata_files", "prepare_fsd50k"]

PARTS = ("dev", "eval")


def prepare_fsd50k(root: str | Path, *, check_audio: bool = True) -> PrepareResult:
    """Build the manifest of an FSD50K copy.

    Each clip's labels are its FSD50K labels; its captions are the labels with underscores
    as spaces, one caption per label in CSV order (the first is usually the most specific);
    its keywords are the Freesound tags from the clip-info JSON. Splits are ``"train"`` and
    ``"val"`` (from ``dev.csv``) and ``"eval"``.

    Args:
        root: The dataset folder.
        check_audio: Read each file's header for duration and sample rate, and skip files
            that cannot be read.

    Returns:
        Clips (dev then eval, in CSV order), and the skipped files.

    Raises:
        DataError: Neither ``dev.csv`` nor ``eval.csv`` found, a clip-info JSON is invalid,
            or a clip is in more than one of its part's audio folders.
    """
    root = Path(root)
    result = PrepareResult()
    found_any = False
    for part in PARTS:
        try:
            csv_path = find_first(root, _ground_truth_names(part), f"{part}.csv")
        except DataError:
            continue
        found_any = True
        rows = read_csv(csv_path, ("fname", "labels"))
        info = _read_clip_info(root, part)
        index = AudioIndex(
            [root / f"FSD50K.{part}_audio", root / f"{part}_audio", root / "audio" / part]
        )
        for row in rows:
            fname = row["fname"]
            labels = [label.strip() for label in row["labels"].split(",") if label.strip()]
            tags = info.get(fname, {}).get("tags", [])
            clip = Clip(
                id=fname,
                audio=fname,
                captions=list(dict.fromkeys(label_to_text(label) for label in labels)),
                keywords=[str(tag) for tag in tags] if isinstance(tags, list) else [],
                labels=labels,
                source="fsd50k",
                split=row.get("split") or part,
            )
            result.add(*probe(index.find(fname, csv_path), clip, check_audio=check_audio))
    if not found_any:
        raise DataError(f"no FSD50K ground truth (dev.csv / eval.csv) in {root}")
    return result


def metadata_files(root: Path) -> list[Path]:
    """The metadata files of an FSD50K copy that :func:`prepare_fsd50k` may read (the
    ground-truth CSVs and the clip-info JSONs)."""
    return existing(
        root, [n for part in PARTS for n in (*_ground_truth_names(part), *_info_names(part))]
    )


def _ground_truth_names(part: str) -> tuple[str, ...]:
    return (f"FSD50K.ground_truth/{part}.csv", f"ground_truth/{part}.csv", f"{part}.csv")


def _info_names(part: str) -> tuple[str, ...]:
    name = f"{part}_clips_info_FSD50K.json"
    return (f"FSD50K.metadata/{name}", f"metadata/{name}", name)


def _read_clip_info(root: Path, part: str) -> dict[str, dict[str, Any]]:
    for candidate in (root / name for name in _info_names(part)):
        if candidate.is_file():
            try:
                data = json.loads(read_text(candidate, "clip info file"))
            except json.JSONDecodeError as exc:
                raise DataError(f"{candidate}: not valid JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise DataError(f"{candidate}: expected an object mapping clip ids to info")
            return {str(k): v for k, v in data.items() if isinstance(v, dict)}
    return {}
