"""Lists of (audio, caption) pairs to score: reading, checking, writing back with ATS.

A pair list is a CSV with at least the columns ``audio`` and ``caption`` (others are kept).
Relative audio paths resolve against the CSV's folder. Every row is checked before any audio
is embedded, and each problem is reported with its line number.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..audio.io import audio_info
from ..data.manifest import csv_header, csv_records
from ..errors import AudioError, DataError, QueryError
from ..fileio import write_text
from ..models.text.base import validate_queries
from ..textfiles import read_text

__all__ = ["ATS_COLUMN", "PairList", "PairRow", "describe_bad", "read_pairs", "write_pairs"]

ATS_COLUMN = "ats"
REQUIRED = ("audio", "caption")


@dataclass
class PairRow:
    """One row of a pair list.

    Attributes:
        line: Line number in the file (the header is line 1).
        values: The row as read, column -> text.
        audio: The audio path, resolved against the list's folder.
        caption: The caption, whitespace-normalised.
        problem: Why the row cannot be scored, or ``None``.
        fields: For a row with the wrong number of fields, its fields as read (``values``
            is then empty).
    """

    line: int
    values: dict[str, str]
    audio: Path
    caption: str
    problem: str | None = None
    fields: list[str] | None = None  # a row with the wrong number of fields, as read


@dataclass
class PairList:
    """A pair list: its columns (in file order) and rows."""

    path: Path
    columns: list[str]
    rows: list[PairRow]

    @property
    def bad(self) -> list[PairRow]:
        """The rows that cannot be scored."""
        return [r for r in self.rows if r.problem is not None]


def read_pairs(path: Path, *, check_audio: bool = True) -> PairList:
    """Read a pair list and check every row (audio readable, caption usable).

    Raises:
        DataError: The file is missing, unreadable, has no rows, or lacks a required column.
    """
    text = read_text(path, "pair list", error=DataError)
    records = csv_records(path, text)
    header = csv_header(records)
    if not header:
        raise DataError(f"{path}: empty file; expected a CSV with columns audio,caption")
    columns = [c.strip() for c in header]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DataError(
            f"{path}: no {' or '.join(missing)} column (found: {', '.join(columns)}); "
            "a pair list has the columns audio,caption"
        )
    twice = sorted({name for name in columns if columns.count(name) > 1})
    if twice:
        raise DataError(f"{path}: column {twice[0]!r} appears twice in the header")
    base = path.parent
    rows: list[PairRow] = []
    checked: dict[Path, str | None] = {}
    for line, values in records:
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(columns):
            problem = f"{len(values)} fields, expected {len(columns)}"
            rows.append(PairRow(line, {}, Path(), "", problem, fields=list(values)))
            continue
        record = dict(zip(columns, values, strict=True))
        audio = Path(os.path.expanduser(record["audio"].strip()))  # "~nosuchuser" stays
        audio = audio if audio.is_absolute() else base / audio
        row = PairRow(line, record, audio, " ".join(record["caption"].split()))
        row.problem = _caption_problem(record["caption"])
        if row.problem is None and not record["audio"].strip():
            row.problem = "empty audio path"
        if row.problem is None and check_audio:
            if audio not in checked:
                checked[audio] = _audio_problem(audio)
            row.problem = checked[audio]
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: the pair list has a header but no rows")
    return PairList(path, columns, rows)


def _caption_problem(caption: str) -> str | None:
    if not caption.strip():
        return "empty caption"
    try:
        validate_queries(caption)
    except QueryError as exc:
        return str(exc)
    return None


def _audio_problem(path: Path) -> str | None:
    try:
        audio_info(path)  # also refuses a file with no samples
    except AudioError as exc:
        return str(exc)
    return None


def describe_bad(pairs: PairList, limit: int = 3) -> str:
    """One line naming the first bad rows by line number."""
    bad = pairs.bad
    shown = "; ".join(f"line {r.line}: {r.problem}" for r in bad[:limit])
    more = f" (and {len(bad) - limit} more)" if len(bad) > limit else ""
    return f"{pairs.path}: {len(bad)} bad row(s): {shown}{more}"


def audio_path_for(audio: str | os.PathLike[str], output: str | os.PathLike[str]) -> str:
    """``audio`` as a pair list written at ``output`` names it: relative to the list's
    folder, both with symlinked folders resolved (the system follows them, text does not);
    absolute where no relative path leads there (another Windows drive)."""
    whole = os.path.join(os.getcwd(), audio)  # not abspath: it drops "s/.." before s is read
    real = os.path.join(os.path.realpath(os.path.dirname(whole)), os.path.basename(whole))
    try:
        return os.path.relpath(real, os.path.realpath(os.path.dirname(os.path.abspath(output))))
    except ValueError:
        return real


def write_pairs(path: Path, pairs: PairList, scores: Sequence[float]) -> None:
    """Write the list with an ``ats`` column (replacing one it had), row order kept.

    A relative audio path is rewritten relative to ``path``'s folder when that is not the
    list's own (:func:`audio_path_for`), so the written list reads as a pair list too;
    absolute and ``~`` paths are kept.

    Rows that were not scored (bad rows under ``--skip-bad``) get an empty ``ats``; a row
    with the wrong number of fields is written back exactly as it was read (nothing of it is
    lost, and the next run reports it again).
    """
    columns = list(pairs.columns)
    if ATS_COLUMN not in columns:
        columns.append(ATS_COLUMN)
    folder = os.path.realpath(path.parent)
    moved = folder != os.path.realpath(pairs.path.parent)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row, score in zip(pairs.rows, scores, strict=True):
        if row.fields is not None:
            writer.writerow(row.fields)
            continue
        values = dict(row.values)
        values[ATS_COLUMN] = "" if math.isnan(score) else f"{score:.6f}"
        written = values.get("audio", "").strip()
        if moved and written and not os.path.isabs(os.path.expanduser(written)):
            # relative to the new list's folder, so that it reads as a pair list too
            values["audio"] = audio_path_for(row.audio, path)
        writer.writerow([values.get(c, "") for c in columns])
    write_text(path, buffer.getvalue())
