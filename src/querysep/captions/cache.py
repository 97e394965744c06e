"""The answer cache: an append-only JSON-lines file, one finished caption per line.

Each line is one :class:`~querysep.captions.backends.Answer` with its key, the sha256 of
``(backend, model, template text, caption, keywords)``: change any of them and the caption
is asked again; keep them and a re-run asks nothing twice. Every line is flushed and
``fsync``-ed as soon as its answer exists, so a run killed at any moment loses at most the
answers still in flight. A last line cut short by such a kill is dropped when the cache is
opened, and cut off the file just before the next answer is appended (so a dry run, which
appends nothing, leaves the file as it was); any other unreadable line is an error, and a
file that is not a cache is never changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import DataError, OutputError
from ..fileio import check_output_file

__all__ = ["AnswerCache", "cache_key"]

#: How every record line starts (``_record`` in ``job.py`` puts ``key`` first).
_RECORD_START = b'{"key": "'


def _whole_json(line: bytes) -> bool:
    """Whether ``line`` is a whole JSON value (a record that only lacks its newline)."""
    try:
        json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def cache_key(
    backend: str, model: str, template: str, caption: str, keywords: Sequence[str]
) -> str:
    """The sha256 hex digest naming one work item (see the module docstring)."""
    payload = json.dumps([backend, model, template, caption, list(keywords)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class AnswerCache:
    """Finished answers by key, read from and appended to a JSON-lines file.

    The file is created, or a cut-short last line cut off it, on :meth:`open` (a job with
    work to do calls it before its first request) or the first :meth:`add`, so a dry run
    leaves no trace.

    Args:
        path: The cache file.

    Raises:
        DataError: A line other than the last is not a JSON object with a ``key``.
        OutputError: The path is a folder or lies under a file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        # a complete cache in a read-only folder is still usable: only a write needs more
        self.path = check_output_file(path, error=OutputError, writable=False)
        self.records: dict[str, dict[str, Any]] = {}
        self.dropped_partial_line = False
        self._handle: Any = None
        self._newline_first = False  # the file's last record lacks its newline
        self._cut_to: int | None = None  # the length to cut a cut-short last line off at
        self._lock = threading.Lock()
        self._created = False  # the file was created by this cache (open or add)
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DataError(f"cannot read cache {self.path}: {exc.strerror or exc}") from None
        complete, _, partial = data.rpartition(b"\n")
        lines = complete.split(b"\n") if complete else []
        for lineno, line in enumerate(lines, start=1):
            self._read_line(line, lineno)
        if not partial.strip():
            return
        # The last line lacks its newline. A whole record is kept (the next one starts on a new
        # line); the start of one, cut short by a kill, is dropped and cut off the file; anything
        # else means the file is not a cache, and it is refused untouched.
        lineno = len(lines) + 1
        if _whole_json(partial):
            self._read_line(partial, lineno)
            self._newline_first = True
            return
        if not _RECORD_START.startswith(partial.lstrip()[: len(_RECORD_START)]):
            self._read_line(partial, lineno)  # raises: not a record
        self.dropped_partial_line = True
        self._cut_to = len(complete) + 1 if complete else 0  # on the first add

    def _read_line(self, line: bytes, lineno: int) -> None:
        if not line.strip():
            return
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        kept = record.get("kept") if isinstance(record, dict) else None
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("key"), str)
            or not isinstance(kept, list)
            or not all(isinstance(text, str) for text in kept)
        ):
            raise DataError(
                f"cache {self.path}:{lineno} is not a cache record; remove that line (or the "
                "file, to ask everything again), or pass another --cache"
            )
        self.records[record["key"]] = record

    def __contains__(self, key: object) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None."""
        return self.records.get(key)

    def add(self, record: dict[str, Any]) -> None:
        """Append ``record`` (which holds its ``key``) and flush it to disk.

        Raises:
            OutputError: The file cannot be written.
        """
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self._open()
            try:
                if self._newline_first:
                    line = "\n" + line
                    self._newline_first = False
                self._handle.write(line)
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except OSError as exc:
                raise OutputError(f"cannot write cache {self.path}: {exc.strerror}") from None
            self.records[record["key"]] = record

    def open(self) -> None:
        """Make the file ready for :meth:`add` now (created, a cut-short last line cut off):
        a job calls this before its first request, so that a cache it cannot write stops it
        before any answer is paid for.

        Raises:
            OutputError: The file cannot be written.
        """
        with self._lock:
            self._open()

    def _open(self) -> None:
        if self._cut_to is not None:
            try:
                os.truncate(self.path, self._cut_to)
            except OSError as exc:
                raise OutputError(f"cannot repair cache {self.path}: {exc.strerror}") from None
            self._cut_to = None
        if self._handle is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._created = self._created or not self.path.exists()
                self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise OutputError(f"cannot write cache {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        """Close the file (a later :meth:`add` opens it again); one that :meth:`open`
        created and nothing was added to is removed (no trace of a job that got no answer)."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
                if self._created and not self.records:
                    self.path.unlink(missing_ok=True)
                    self._created = False

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
