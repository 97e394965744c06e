"""The web app's private folder: uploads and outputs, kept to a bounded age and size.

Everything the app receives or produces lives under one folder made by
:func:`tempfile.mkdtemp` (readable by its owner only). The app serves files from this folder
and from nowhere else. :meth:`Workspace.prune` removes files older than ``keep_seconds``,
then, while the folder holds more than ``max_bytes``, the oldest files first, so a server
that runs for months does not fill the disk; :meth:`Workspace.close` removes the folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Workspace"]


class Workspace:
    """A private temporary folder that cleans itself.

    Args:
        keep_seconds: Files older than this are removed (their results can no longer be
            played or downloaded from the page).
        max_bytes: Most bytes the folder may hold; beyond it the oldest files go first.
        grace_seconds: Files this young are never removed to meet ``max_bytes`` (a request
            may be about to read them), nor are the files of running jobs and pinned files.
        parent: Where to make the folder (default: the system's temporary folder).
    """

    def __init__(
        self,
        *,
        keep_seconds: float = 3600.0,
        max_bytes: int = 4 << 30,
        grace_seconds: float = 600.0,
        parent: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="querysep-app-", dir=parent)).resolve()
        self.keep_seconds = float(keep_seconds)
        self.max_bytes = int(max_bytes)
        self.grace_seconds = float(grace_seconds)
        self._busy: set[Path] = set()
        self._pinned: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def job(self, *inputs: str | os.PathLike[str]) -> Iterator[Path]:
        """A new folder for one request's outputs, kept from pruning while it runs.

        Args:
            inputs: Files the job reads (its upload), also kept while it runs.

        Yields:
            The empty folder. If the job fails, the folder and whatever is in it are removed.
        """
        folder = self.root / "jobs" / secrets.token_hex(16)
        folder.mkdir(parents=True)
        held = {folder, *(Path(p).resolve() for p in inputs)}
        with self._lock:
            self._busy |= held
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            with self._lock:
                self._busy -= held

    def pin_contents(self) -> None:
        """Never prune the files in the folder now (the page's example recordings)."""
        with self._lock:
            self._pinned |= {p for p in self.root.rglob("*") if p.is_file()}

    def _is_busy(self, path: Path) -> bool:
        return path in self._pinned or any(path == b or b in path.parents for b in self._busy)

    def prune(self, now: float | None = None) -> int:
        """Remove expired files, then the oldest ones while over ``max_bytes``.

        Args:
            now: The current time (``time.time()``), for tests.

        Returns:
            How many bytes were removed.
        """
        now = time.time() if now is None else now
        with self._lock:
            files = []
            for path in self.root.rglob("*"):
                with contextlib.suppress(OSError):
                    st = path.lstat()
                    if not path.is_dir() and not self._is_busy(path):
                        files.append((st.st_mtime, st.st_size, path))
            files.sort()
            total = sum(size for _, size, _ in files)
            removed = 0
            for mtime, size, path in files:
                age = now - mtime
                if age > self.keep_seconds or (
                    total - removed > self.max_bytes and age > self.grace_seconds
                ):
                    with contextlib.suppress(OSError):
                        path.unlink()
                        removed += size
            self._remove_empty_folders(now)
        return removed

    def _remove_empty_folders(self, now: float) -> None:
        folders = sorted(
            (p for p in self.root.rglob("*") if p.is_dir()),
            key=lambda p: len(p.parts),
            reverse=True,
        )
        for folder in folders:
            with contextlib.suppress(OSError):  # not empty, or already gone
                if not self._is_busy(folder) and now - folder.stat().st_mtime > self.grace_seconds:
                    folder.rmdir()

    def start_pruning(self, every_seconds: float = 60.0) -> None:
        """Prune in a background thread every ``every_seconds`` until :meth:`close`."""

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                self.prune()

        self._thread = threading.Thread(target=loop, name="querysep-app-prune", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop pruning and remove the folder with everything in it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)
