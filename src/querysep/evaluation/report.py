"""Evaluation outputs: the streamed per-clip CSV, ``summary.json`` and the markdown table.

``per_clip.csv`` holds the mixture list's own columns, then ``system`` and one column per
metric, one row per (clip, system). Rows are appended and flushed one at a time, so a killed
run loses at most the row being written; :func:`read_per_clip` drops a torn last row.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..errors import DataError
from ..fileio import check_output_folder, write_text
from ..textfiles import read_text

__all__ = [
    "METRIC_COLUMNS",
    "PerClipWriter",
    "format_table",
    "read_per_clip",
    "write_summary",
]

#: The standard metrics: CSV column -> table label, in table order.
METRIC_COLUMNS: dict[str, str] = {"sdr": "SDR", "sdri": "SDRi", "si_sdr": "SI-SDR"}


def read_per_clip(path: Path, header: Sequence[str]) -> tuple[list[dict[str, str]], bool]:
    """Read the rows of an existing per-clip CSV.

    Args:
        path: The CSV file (it need not exist).
        header: The columns this run writes; the file must have exactly these.

    Returns:
        ``(rows, clean)``: the complete rows, and whether the file can be appended to as is
        (``False`` when a torn or malformed row was dropped, so it must be rewritten). A last
        row without its final newline is torn, even when its values still parse.

    Raises:
        DataError: The file was written with other columns (another list or other metrics).
    """
    if not path.is_file() or path.stat().st_size == 0:
        return [], False
    text = read_text(path, "per-clip scores file")
    reader = csv.reader(io.StringIO(text, newline=""))
    found = next(reader, None)
    if found != list(header):
        raise DataError(
            f"{path} was written for another mixture list or other metrics; "
            "delete it or choose another output folder"
        )
    metrics = range(header.index("system") + 1, len(header))  # numeric columns
    records = list(reader)
    clean = text.endswith("\n")
    if not clean and records:
        # Rows are written whole, newline last: a final record without its newline was
        # cut, maybe inside its last number ("-3.25" for "-3.2517"), which still parses.
        records.pop()
    rows: list[dict[str, str]] = []
    for values in records:
        if len(values) != len(header) or not _all_numbers(values[i] for i in metrics):
            clean = False
            continue
        rows.append(dict(zip(header, values, strict=True)))
    return rows, clean


def _all_numbers(values: Iterable[str]) -> bool:
    try:
        for value in values:
            float(value)
    except ValueError:
        return False
    return True


class PerClipWriter:
    """Appends rows to the per-clip CSV, flushing each one.

    The header (with ``existing``) is written atomically when the file is started afresh;
    after that, rows are appended, not rewritten, so resuming costs nothing and a killed
    run loses at most the row being written (which :func:`read_per_clip` drops).

    Nothing is written until the first row, so a run that fails before scoring anything
    (unreadable first clip, bad query) leaves no output folder or file behind. Leaving the
    ``with`` block without an error creates the file (header only) even if no row came.

    Args:
        path: The CSV file.
        header: Its columns.
        existing: Rows to (re)write first when ``rewrite`` (the complete rows of a torn file).
        rewrite: Start the file afresh (with ``existing``) instead of appending to it.
        on_open: Called once, just before the file is first opened (to write files that
            must exist whenever rows do).
    """

    def __init__(
        self,
        path: Path,
        header: Sequence[str],
        existing: Sequence[Mapping[str, str]] = (),
        *,
        rewrite: bool = True,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self._on_open = on_open
        self.header = list(header)
        self._existing = list(existing)
        self._rewrite = rewrite
        self._handle: TextIO | None = None

    def _open(self) -> TextIO:
        if self._handle is None:
            check_output_folder(self.path.parent, create=True)
            if self._on_open is not None:
                self._on_open()
            if self._rewrite or not self.path.is_file():
                rows = ([row[c] for c in self.header] for row in self._existing)
                lines = [self.header, *rows]
                write_text(self.path, "".join(_csv_line(values) for values in lines))
            self._handle = self.path.open("a", encoding="utf-8", newline="")
        return self._handle

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (missing columns are left empty) and flush it to disk."""
        values = [_cell(row.get(c, "")) for c in self.header]
        handle = self._open()
        handle.write(_csv_line(values))
        handle.flush()

    def close(self) -> None:
        """Close the file (creating it first if no row was written)."""
        self._open().close()

    def __enter__(self) -> PerClipWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        elif self._handle is not None:
            self._handle.close()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest round-tripping form: the CSV keeps full precision
    return str(value)


def _csv_line(values: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def format_table(
    scores: Mapping[str, Mapping[str, float]],
    columns: Mapping[str, str] = METRIC_COLUMNS,
    *,
    decimals: int = 3,
) -> str:
    """The results as a markdown table shaped like Table 2 of the DCASE 2024 Task 9 report.

    Args:
        scores: ``{system: {column: mean}}``, rows in this order.
        columns: Column key -> header label, in order.
        decimals: Digits after the point.

    Returns:
        ``| System | SDR | SDRi | SI-SDR |`` and one line per system, with a final newline.
        A missing or non-finite value prints as ``-``.
    """
    head = "| System | " + " | ".join(columns.values()) + " |"
    rule = "|---|" + "---:|" * len(columns)
    lines = [head, rule]
    for name, values in scores.items():
        cells = []
        for key in columns:
            value = values.get(key)
            ok = isinstance(value, int | float) and math.isfinite(value)
            cells.append(f"{value:.{decimals}f}" if ok else "-")
        label = name.replace("|", "\\|")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``summary.json`` atomically (non-finite means are written as ``null``)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    write_text(path, json.dumps(clean(payload), indent=2, ensure_ascii=False) + "\n")
