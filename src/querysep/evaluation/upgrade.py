"""Bringing an evaluation folder up to date with new metric columns, in place.

A ``per_clip.csv`` written before a metric existed (ATS, say) lacks its column. Instead of
refusing the folder, :func:`upgrade_per_clip` adds the column to every existing row: the
stored SDR, SDRi and SI-SDR values are kept as they are; only the new columns are computed.
A reference-free metric needs each row's output, so the output is produced again (the
mixture, the oracle mask, or the model run once more on that clip) and checked against the
stored SDR: a system that no longer reproduces its stored scores stops the upgrade, since its
new column would describe another output.

The upgrade streams its rows to ``per_clip.upgrade.csv`` (flushed one by one), so a killed
upgrade resumes where it stopped; the finished file replaces ``per_clip.csv`` atomically.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..data.manifest import MixtureRow
from ..data.mixing import load_row_mixture, row_files
from ..errors import DataError, QuerysepError
from ..fileio import write_text
from ..textfiles import read_text
from .report import METRIC_COLUMNS, PerClipWriter, _csv_line, read_per_clip
from .systems import System, run_system

__all__ = ["UPGRADE_NAME", "missing_columns", "peek_header", "upgrade_per_clip"]

UPGRADE_NAME = "per_clip.upgrade.csv"

#: Largest difference (dB) between a stored SDR and the recomputed output's SDR.
SDR_TOLERANCE = 0.01

Scorer = Callable[[System, np.ndarray, np.ndarray, np.ndarray, str], dict[str, float]]


def peek_header(path: Path) -> list[str] | None:
    """The header of an existing CSV, or ``None`` when there is no (non-empty) file."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    text = read_text(path, "per-clip scores file")
    return next(csv.reader(io.StringIO(text, newline="")), None)


def missing_columns(
    old: Sequence[str], new: Sequence[str], addable: Sequence[str]
) -> list[str] | None:
    """The columns an upgrade adds, or ``None`` when ``old`` cannot become ``new`` by adding
    only ``addable`` columns (another list, other standard metrics, or nothing to add)."""
    missing = [c for c in new if c not in old]
    if not missing or any(c not in addable for c in missing):
        return None
    if [c for c in new if c in old] != list(old):
        return None
    return missing


def upgrade_per_clip(
    per_clip: Path,
    old_header: Sequence[str],
    header: Sequence[str],
    list_columns: Sequence[str],
    rows: Sequence[MixtureRow],
    audio_path: Path,
    sample_rate: int,
    get_system: Callable[[str], System],
    score: Scorer,
    *,
    progress: bool = True,
    on_open: Callable[[], None] | None = None,
) -> int:
    """Add the columns of ``header`` that ``old_header`` lacks to every row, in place.

    Args:
        per_clip: The CSV to upgrade.
        old_header: Its columns.
        header: The columns it gets (``old_header`` plus new metric columns).
        list_columns: The mixture list's columns (the start of both headers).
        rows: The mixture list's rows (every row of the file refers to one of them).
        audio_path: Where the clips are.
        sample_rate: The evaluation rate.
        get_system: Builds the system a row names.
        score: ``score(system, mixture, target, estimate, query)`` -> every metric.
        progress: Show a progress bar.
        on_open: Called once, just before the first upgraded row is written (to record
            which model computed the new columns).

    Returns:
        The number of rows upgraded by this call.

    Raises:
        DataError: A row whose clip is not in the list, whose audio is missing, or whose
            system no longer reproduces its stored SDR.
    """
    old_rows, _ = read_per_clip(per_clip, old_header)
    side = per_clip.with_name(UPGRADE_NAME)
    done, clean = _read_progress(side, header, old_rows, list_columns)
    by_key: dict[tuple[str, ...], MixtureRow] = {}
    for row in rows:
        by_key.setdefault(row.values(list_columns), row)
    new_columns = [c for c in header if c not in old_header]
    todo = old_rows[len(done) :]
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="row", desc="adding " + ", ".join(new_columns))
    try:
        with PerClipWriter(side, header, done, rewrite=not clean, on_open=on_open) as writer:
            clip: tuple[tuple[str, ...], MixtureRow, np.ndarray, np.ndarray] | None = None
            cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for old in todo:
                key = tuple(old[c] for c in list_columns)
                if clip is None or clip[0] != key:
                    clip, cache = (key, *_load_clip(key, by_key, audio_path, sample_rate)), {}
                _, row, mixture, target = clip
                values = _upgrade_row(
                    old,
                    new_columns,
                    row.caption,
                    mixture,
                    target,
                    sample_rate,
                    get_system,
                    score,
                    cache,
                )
                writer.write({**old, **values})
                done.append({**old, **{c: repr(v) for c, v in values.items()}})
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    lines = [_csv_line(header), *(_csv_line([r[c] for c in header]) for r in done)]
    write_text(per_clip, "".join(lines))
    side.unlink(missing_ok=True)
    return len(todo)


def _read_progress(
    side: Path,
    header: Sequence[str],
    old_rows: Sequence[Mapping[str, str]],
    list_columns: Sequence[str],
) -> tuple[list[dict[str, str]], bool]:
    """Rows an interrupted upgrade finished: a prefix of the old rows, in the same order."""
    if not side.is_file():
        return [], False
    try:
        done, clean = read_per_clip(side, header)
    except DataError:  # written for other columns: start again
        return [], False
    names = [*list_columns, "system", *METRIC_COLUMNS]
    for new, old in zip(done, old_rows, strict=False):
        if any(new[c] != old[c] for c in names):
            return [], False
    if len(done) > len(old_rows):
        return [], False
    return done, clean


def _load_clip(
    key: tuple[str, ...],
    by_key: Mapping[tuple[str, ...], MixtureRow],
    audio_path: Path,
    sample_rate: int,
) -> tuple[MixtureRow, np.ndarray, np.ndarray]:
    row = by_key.get(key)
    if row is None:
        raise DataError(
            f"per_clip.csv has a row ({', '.join(key)}) that is not in this mixture list; "
            "upgrade the folder with the list it was written for"
        )
    return (row, *load_row_mixture(row, row_files(row, audio_path), sample_rate))


def _upgrade_row(
    old: Mapping[str, str],
    new_columns: Sequence[str],
    query: str,
    mixture: np.ndarray,
    target: np.ndarray,
    sample_rate: int,
    get_system: Callable[[str], System],
    score: Scorer,
    cache: dict[int, tuple[np.ndarray, np.ndarray]],
) -> dict[str, float]:
    name = old["system"]
    try:
        system = get_system(name)
    except QuerysepError as exc:
        raise DataError(
            f"cannot add {', '.join(new_columns)} to the rows of system {name!r}: {exc}"
        ) from None
    estimate = run_system(system, mixture, target, query, sample_rate, cache)
    scores = score(system, mixture, target, estimate, query)
    stored = float(old["sdr"])
    if math.isfinite(stored) and abs(scores["sdr"] - stored) > SDR_TOLERANCE:
        raise DataError(
            f"system {name!r} no longer reproduces the SDR stored in per_clip.csv "
            f"({scores['sdr']:.3f} dB now, {stored:.3f} dB stored): the model or its settings "
            "changed since that run; evaluate into a new folder"
        )
    return {c: float(scores[c]) for c in new_columns}
