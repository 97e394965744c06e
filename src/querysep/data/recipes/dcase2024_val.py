"""The DCASE 2024 Task 9 (LASS) validation set.

Expected layout::

    ROOT/lass_validation.json             {"data": [{"wav": ..., "caption": ...}, ...]}
    ROOT/lass_synthetic_validation.csv    source,noise,snr,caption  (optional)
    ROOT/**/<id>.wav                      the clips (e.g. ROOT/lass_validation/)

The mixture list itself is read with :func:`querysep.data.read_mixture_list`; this recipe
makes the clip manifest.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..manifest import Clip, read_datafile, read_mixture_list
from ._common import AudioIndex, PrepareResult, existing, find_first, probe

__all__ = ["metadata_files", "prepare_dcase2024_val"]

DATAFILE = "lass_validation.json"
MIXTURE_LIST = "lass_synthetic_validation.csv"
#: Where the datafile may be, in the order tried.
DATAFILE_NAMES = (DATAFILE, f"lass_validation/{DATAFILE}")


def prepare_dcase2024_val(root: str | Path, *, check_audio: bool = True) -> PrepareResult:
    """Build the manifest of the DCASE 2024 Task 9 validation set.

    The clips and captions come from ``lass_validation.json`` (one clip per wav, its
    captions grouped). A ``wav`` path that does not exist as written (relative to ``root``)
    is looked up by file name anywhere under ``root``. Clips that the mixture list names
    (as noise) but the JSON does not are added without captions, so that mixtures can be
    re-made from the manifest. All clips get the split ``"validation"``.

    Args:
        root: The dataset folder.
        check_audio: Read each file's header for duration and sample rate, and skip files
            that cannot be read.

    Returns:
        The clips and the skipped files.

    Raises:
        DataError: No ``lass_validation.json``, it or the mixture list is malformed, or a
            clip looked up by name is the name of several files under ``root``.
    """
    root = Path(root)
    datafile = find_first(root, DATAFILE_NAMES, DATAFILE)
    index = AudioIndex([root], recursive=True)
    result = PrepareResult()
    seen: set[str] = set()
    for clip in read_datafile(datafile, audio_dir=root):
        path = Path(clip.audio)
        if not path.is_file():
            path = index.find(os.path.basename(clip.audio), datafile) or path
        clip.source, clip.split = "dcase2024-val", "validation"
        seen.add(clip.id)
        result.add(*probe(path, clip, check_audio=check_audio))
    list_path = root / MIXTURE_LIST
    if list_path.is_file():
        for row in read_mixture_list(list_path):
            for clip_id in (row.source, row.noise):
                if clip_id is None or clip_id in seen:
                    continue
                seen.add(clip_id)
                clip = Clip(id=clip_id, audio="", source="dcase2024-val", split="validation")
                result.add(
                    *probe(
                        index.find(clip_id, list_path),
                        clip,
                        check_audio=check_audio,
                        listed_as=clip_id,
                    )
                )
    return result


def metadata_files(root: Path) -> list[Path]:
    """The metadata files of a DCASE 2024 validation copy that
    :func:`prepare_dcase2024_val` may read (the datafile and the mixture list)."""
    return existing(root, (*DATAFILE_NAMES, MIXTURE_LIST))
