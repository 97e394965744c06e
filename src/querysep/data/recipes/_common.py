"""Shared pieces of the dataset recipes: the result type, CSV reading, audio lookup."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import AudioError, DataError
from ...textfiles import read_text
from ..manifest import AUDIO_EXTENSIONS, Clip

__all__ = [
    "AudioIndex",
    "PrepareResult",
    "SkippedFile",
    "existing",
    "find_first",
    "probe",
    "read_csv",
]


@dataclass
class SkippedFile:
    """An audio file a recipe left out, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


@dataclass
class PrepareResult:
    """What a recipe returns: the clips it found and the files it had to skip.

    Attributes:
        clips: Clips whose audio exists (and, when probed, could be read).
        skipped: Files listed in the metadata that are missing or unreadable.
    """

    clips: list[Clip] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def skipped_note(self) -> str:
        """``skipped N missing/unreadable files (first: ...)``, or ``""`` when none were."""
        if not self.skipped:
            return ""
        return f"skipped {len(self.skipped)} missing/unreadable files (first: {self.skipped[0]})"

    def add(self, clip: Clip | None, skipped: SkippedFile | None) -> None:
        """Record the outcome of :func:`probe`."""
        if clip is not None:
            self.clips.append(clip)
        if skipped is not None:
            self.skipped.append(skipped)


def read_csv(
    path: Path,
    required: Sequence[str],
    *,
    filled: Sequence[str] = (),
    latin1_fallback: bool = False,
) -> list[dict[str, str]]:
    """Read a CSV with a header into dicts, checking that ``required`` columns exist.

    Args:
        path: The CSV file.
        required: Columns it must have.
        filled: Columns that no row may leave empty (a short or blank row is refused with
            its line number rather than read as a clip without a name or class).
        latin1_fallback: Read a file that is not UTF-8 as Latin-1 instead of failing (some
            Clotho metadata files are Latin-1); files written by users must be UTF-8.

    Raises:
        DataError: The file is missing, not UTF-8 text (unless ``latin1_fallback``), lacks
            a required column, a row leaves a ``filled`` column empty, or a row has more
            fields than the header (a comma left unquoted would cut a caption short).
    """
    fallback = "latin-1" if latin1_fallback else None
    text = read_text(path, "metadata file", fallback_encoding=fallback)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in required if name not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
        reader.fieldnames = header
        rows = []
        for row in reader:
            extra = row.get(None) or []  # more fields than the header names
            if any(value.strip() for value in extra):  # a comma left unquoted (not trailing)
                raise DataError(
                    f"{path}:{reader.line_num}: {len(header) + len(extra)} fields, but the "
                    f"header has {len(header)} (quote a field that holds a comma: "
                    '"a car, honking")'
                )
            rows.append({k: (v or "").strip() for k, v in row.items() if k is not None})
            empty = next((name for name in filled if not rows[-1][name]), None)
            if empty is not None:
                raise DataError(f"{path}:{reader.line_num}: no {empty} (a short or blank row)")
        return rows
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        raise DataError(f"{path}:{reader.line_num}: not a valid CSV file: {exc}") from None


def find_first(root: Path, candidates: Iterable[str], what: str) -> Path:
    """Return the first of ``root / c`` that exists.

    Raises:
        DataError: None exists.
    """
    tried = []
    for candidate in candidates:
        path = root / candidate
        if path.exists():
            return path
        tried.append(candidate)
    raise DataError(f"{what} not found in {root} (looked for {', '.join(tried)})")


def existing(root: Path, candidates: Iterable[str]) -> list[Path]:
    """The files among ``root / c`` that exist, in order (a recipe's metadata files)."""
    return [root / c for c in candidates if (root / c).is_file()]


class AudioIndex:
    """Audio files of some folders, found by file name or by name without extension.

    Scanning once is much faster than probing each candidate path of a large dataset.
    Iterating gives every file found; a look-up by name refuses a name that several files
    answer to (in other folders, or other extensions of a stem), as which one the metadata
    means cannot be guessed: the first found could be a stale or resampled copy.
    """

    def __init__(self, folders: Iterable[Path], *, recursive: bool = False) -> None:
        self.paths: list[Path] = []
        self._by_name: dict[str, list[Path]] = {}  # every file of each name, in scan order
        self._by_stem: dict[str, list[Path]] = {}
        seen: set[Path] = set()
        for folder in folders:
            if folder.is_dir():
                for path in _scan(folder, recursive):
                    if path in seen:
                        continue
                    seen.add(path)
                    self.paths.append(path)
                    self._by_name.setdefault(path.name, []).append(path)
                    self._by_stem.setdefault(path.stem, []).append(path)

    def __len__(self) -> int:
        return len(self.paths)

    def find(self, name: str, listed_in: str | Path) -> Path | None:
        """Find ``name`` by exact file name, else by stem (so ``x.wav`` also finds ``x.flac``).

        Args:
            name: The name the metadata gives.
            listed_in: The metadata file, for the message.

        Returns:
            The one file of that name, or ``None``.

        Raises:
            DataError: Several files have that name (or, none having it, that stem).
        """
        return _one(self.find_all(name), name, listed_in)

    def find_stem(self, stem: str, listed_in: str | Path) -> Path | None:
        """The file whose name without extension is ``stem``, or ``None``.

        Raises:
            DataError: Several files have that stem.
        """
        return _one(self._by_stem.get(stem, []), stem, listed_in)

    def find_all(self, name: str) -> list[Path]:
        """Every file that answers to ``name`` as :meth:`find` looks it up, in scan order."""
        name = os.path.basename(name)
        if name in self._by_name:
            return list(self._by_name[name])
        stem, ext = os.path.splitext(name)
        if ext.lower() not in AUDIO_EXTENSIONS:
            stem = name
        return list(self._by_stem.get(stem, []))

    def __iter__(self) -> Iterator[Path]:
        """Every file found, sorted by path (files sharing a name in other folders too)."""
        return iter(sorted(self.paths))


def _one(found: list[Path], name: str, listed_in: str | Path) -> Path | None:
    if len(found) < 2:
        return found[0] if found else None
    under = Path(os.path.commonpath(found))
    shown = ", ".join(p.relative_to(under).as_posix() for p in found[:3])
    more = ", ..." if len(found) > 3 else ""
    raise DataError(
        f"{listed_in}: {name!r} names {len(found)} audio files under {under} ({shown}{more}): "
        "keep only one of them"
    )


def _scan(folder: Path, recursive: bool) -> Iterator[Path]:
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for filename in sorted(filenames):
                if os.path.splitext(filename)[1].lower() in AUDIO_EXTENSIONS:
                    yield Path(dirpath) / filename
        return
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file() and os.path.splitext(entry.name)[1].lower() in AUDIO_EXTENSIONS:
            yield Path(entry.path)


def probe(
    path: Path | None, clip: Clip, *, check_audio: bool, listed_as: str = ""
) -> tuple[Clip | None, SkippedFile | None]:
    """Fill in ``clip.audio`` (and duration / rate when ``check_audio``) or report a skip.

    Args:
        path: The audio file found for the clip, or ``None`` if none was found.
        clip: The clip to complete; its ``audio`` is replaced by ``path``.
        check_audio: Open the file header to read duration and sample rate; files that
            cannot be read (or are empty) are skipped.
        listed_as: The name the metadata used, for the skip message of a missing file.

    Returns:
        ``(clip, None)`` on success, ``(None, skipped)`` otherwise.
    """
    if path is None or not path.is_file():
        return None, SkippedFile(listed_as or clip.audio or clip.id, "missing")
    clip.audio = str(path.resolve())
    if check_audio:
        from ...audio.io import audio_info

        try:
            info = audio_info(path)
        except (AudioError, OSError, RuntimeError) as exc:
            return None, SkippedFile(str(path), f"unreadable: {exc}")
        if info.num_frames <= 0:
            return None, SkippedFile(str(path), "empty")
        clip.duration = float(info.duration)
        clip.sample_rate = int(info.sample_rate)
    return clip, None
