"""Atomic file writes and output-path checks.

Every file querysep writes whole goes through here: audio, manifests, mixture lists,
evaluation summaries and tables, plots, run configs, model folders and training checkpoints
(``last.ckpt``, and ``best.ckpt`` through :class:`querysep.training.callbacks.AtomicCheckpointIO`).
Files that grow by appending so that a killed run can resume are not replaced whole: the
evaluation's ``per_clip.csv`` (its first part is written atomically) and the training logs.

A write with :class:`AtomicFile` (or :func:`atomic_files`, :func:`write_text`,
:func:`write_bytes`) goes like this:

1. The output path is checked: a folder where the file should go, or a file where one of
   its folders should be, is a one-line :class:`~querysep.errors.OutputError` that names
   the output (never the temporary file). Missing folders are created.
2. The data goes to a hidden temporary file next to the output,
   ``.<name>.<random>.part<ext>`` (a long ``<name>`` cut so that this fits 255 bytes). The
   real extension is kept for writers that choose the format by it (libsndfile, matplotlib).
3. The temporary file is flushed to disk (``os.fsync``) and renamed over the output
   (``os.replace``), so a reader sees the old file or the new one, never a torn one.
4. On any exception, Ctrl-C included, the temporary file is removed and the output is left
   as it was.

The output gets the permissions a plain ``open(path, "w")`` gives (``0o666 & ~umask``), not
the owner-only ``0o600`` of :func:`tempfile.mkstemp` files.

This module imports nothing from querysep but :mod:`querysep.errors`, so any module can
use it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

from .errors import OutputError, QuerysepError

__all__ = [
    "AtomicFile",
    "atomic_files",
    "check_output_file",
    "check_output_folder",
    "locked_folder",
    "new_folders_removed_on_error",
    "publish_folder",
    "refuse_overwriting",
    "remove_stale_temp_files",
    "sha256_file",
    "write_bytes",
    "write_text",
]

StrPath = str | os.PathLike[str]


#: Errors of writing into an open file, which carry no file name.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _in_the_way(folder: Path) -> str | None:
    """Why ``folder`` cannot be a folder (something at it or above it is not one), or None.

    Other problems (no permission, ...) return None and are left to the write to report.
    """
    for candidate in (folder, *folder.parents):
        try:
            mode = candidate.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            if candidate.is_symlink():
                return f"{candidate} is a broken link, not a folder"
            continue  # missing (created later), or under a file found further up
        except OSError:
            return None
        return None if stat.S_ISDIR(mode) else f"{candidate} is a file, not a folder"
    return None


def check_output_file(
    path: StrPath, *, error: type[QuerysepError] = OutputError, writable: bool = True
) -> Path:
    """Check, without creating anything, that ``path`` can be written as a file.

    Args:
        path: The file to be written.
        error: The error type to raise.
        writable: Also refuse a folder that cannot be written (for a file that may only be
            read, such as a cache that is complete, pass False).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``path`` is a folder, one of its folders is a file, or (``writable``)
            its folder, or the nearest existing folder above it, cannot be written
            (``error``).
    """
    p = Path(path)
    if p.is_dir():
        raise error(f"cannot write {p}: it is a folder")
    problem = _in_the_way(p.parent) or (_not_writable(p.parent) if writable else None)
    if problem:
        raise error(f"cannot write {p}: {problem}")
    return p


def _not_writable(folder: Path) -> str | None:
    """Why nothing can be created in ``folder`` (or, when it is missing, in the nearest
    folder above it that exists), found before any slow work; or None."""
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            if os.access(candidate, os.W_OK | os.X_OK):
                return None
            return f"{candidate} is not writable"
    return None


def refuse_overwriting(
    outputs: Iterable[StrPath | None],
    inputs: Iterable[StrPath] = (),
    *,
    error: type[QuerysepError] = OutputError,
) -> None:
    """Refuse an output that is one of the inputs, or that two outputs share.

    Writing an input would destroy what is being read; two outputs at one path would keep
    only the last. Existing files are compared by device and inode (links, hard links),
    others by their resolved path. ``None`` outputs are skipped.

    Raises:
        OutputError: The first such output (``error``).
    """
    sources = {_identity(p): Path(p) for p in inputs}
    seen: dict[object, Path] = {}
    for out in outputs:
        if out is None:
            continue
        key = _identity(out)
        if key in sources:
            raise error(
                f"cannot write {out}: it is the input {sources[key]}; choose another output"
            )
        if key in seen:
            raise error(
                f"cannot write {out} twice (also given as {seen[key]}); give each output "
                "its own path"
            )
        seen[key] = Path(out)


def _identity(path: StrPath) -> object:
    """What makes two paths one file: device and inode when it exists (hard links, case-
    insensitive names), else the resolved path."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


@contextlib.contextmanager
def new_folders_removed_on_error(paths: Iterable[StrPath]) -> Iterator[None]:
    """On an error inside the block, remove the folders above ``paths`` that the block
    created and left empty, so a failed run leaves no empty output folder behind.

    Folders that existed before, or that hold anything, are never touched.
    """
    created: set[Path] = set()
    for path in paths:
        parent = Path(path).absolute().parent
        for folder in (parent, *parent.parents):
            if folder.exists():
                break
            created.add(folder)
    try:
        yield
    except BaseException:
        for folder in sorted(created, key=lambda f: len(f.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty, or gone already
                folder.rmdir()
        raise


@contextlib.contextmanager
def locked_folder(folder: StrPath, command: str) -> Iterator[Path]:
    """Create ``folder`` if needed and hold an exclusive lock on it while the block runs.

    A second querysep command that writes into the same folder (two ``evaluate`` runs, two
    trainings into one run folder) is refused in one line instead of interleaving its
    writes with the first's: an evaluation's appended rows or a run's checkpoints would be
    lost or mixed. The lock is advisory, on the folder itself (``flock``; no lock file is
    left behind), and the system drops it when the process ends, however it ends (forked
    children, such as DataLoader workers, do not keep it). Where
    there is no ``flock`` (Windows) nothing is locked. A folder the block created is
    removed again if the block fails and leaves it empty.

    Args:
        folder: The output folder.
        command: The command's name, for the message (``"evaluate"``).

    Raises:
        OutputError: Another process holds the lock, or the folder cannot be created.
    """
    p = Path(folder)
    with new_folders_removed_on_error([p / "_"]):
        check_output_folder(p, create=True)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks on folders
            yield p
            return
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError as exc:
            raise OutputError(f"cannot open folder {p}: {_reason(exc)}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputError(
                    f"{p} is in use by another running querysep {command}: wait for it to "
                    "finish, or write into another folder"
                ) from None
            except OSError:  # a file system without flock: go on unlocked, as on Windows
                pass
            _HELD_LOCKS.add(fd)
            yield p
        finally:
            _HELD_LOCKS.discard(fd)
            os.close(fd)


# The lock belongs to the open folder, which a forked child (a DataLoader worker) would
# share: a child closes its copy, so the lock ends with the process that took it.
_HELD_LOCKS: set[int] = set()


def _close_held_locks_in_child() -> None:
    for fd in list(_HELD_LOCKS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_locks_in_child)


def check_output_folder(folder: StrPath, *, create: bool = False) -> Path:
    """Check that ``folder`` is or can become a folder; with ``create``, make it so.

    Without ``create`` nothing is created, so a command can check its output folder before
    any slow work and create it only once it has something to write.

    Args:
        folder: The output folder.
        create: Create it (and its parents) if missing.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``folder`` or a folder above it is a file, it (or the nearest existing
            folder above it) cannot be written, or it cannot be created.
    """
    p = Path(folder)
    problem = _in_the_way(p) or _not_writable(p)
    if problem:
        raise OutputError(f"cannot write to {p}: {problem}")
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create folder {p}: {_reason(exc)}") from exc
    return p


def publish_folder(temp: StrPath, folder: StrPath) -> Path:
    """Rename a finished ``temp`` folder to ``folder``, replacing what is there.

    An old ``folder`` is moved aside first and removed only after the rename, and put back if
    the rename fails, so ``folder`` is always either the old folder or the new one. Files in
    ``temp`` get the permissions a plain ``open(path, "w")`` gives, whatever wrote them (some
    writers, safetensors among them, leave owner-only files).
    """
    import shutil

    temp, folder = Path(temp), Path(folder)
    mode = _plain_file_mode(temp)
    for path in temp.rglob("*"):
        if path.is_file() and not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    old = None
    if folder.is_dir():
        old = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.old")
        os.replace(folder, old)
    try:
        os.replace(temp, folder)
    except OSError:
        if old is not None:
            os.replace(old, folder)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _plain_file_mode(folder: Path) -> int:
    """The mode a new file in ``folder`` gets from ``open(path, "w")`` (``0o666 & ~umask``)."""
    probe = _temp_name(folder / "mode")
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        return stat.S_IMODE(os.stat(probe).st_mode)
    finally:
        probe.unlink()


#: Longest file name most file systems take, in bytes.
_NAME_MAX = 255


def _temp_stem(path: Path) -> str:
    """``path``'s name as its temporary files' names hold it: cut (at a character) so that
    ``.<name>.<8 hex>.part<ext>`` fits :data:`_NAME_MAX` bytes, as ``path``'s own name may,
    and then ended by ``~`` and 6 hex digits of the whole name's hash, so that two long names
    that share the kept part keep apart."""
    room = _NAME_MAX - len(f"..01234567.part{path.suffix}".encode("utf-8", "surrogateescape"))
    name = path.name
    if len(name.encode("utf-8", "surrogateescape")) <= room:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:6]
    while name and len(name.encode("utf-8", "surrogateescape")) > room - 7:
        name = name[:-1]
    return f"{name}~{digest}"


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{_temp_stem(path)}.{secrets.token_hex(4)}.part{path.suffix}")


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk, where the OS allows it."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicFile:
    """One atomic write: a hidden temporary file that replaces ``path`` on commit.

    Creating it checks ``path`` (see :func:`check_output_file`), creates its folder and
    reserves an empty temporary file there. Use it as a context manager that gives the
    temporary path to write to; a clean exit commits, an exception discards. An
    :class:`OSError` about the temporary file becomes ``error`` naming ``path``.

    Args:
        path: The output file.
        error: The error type raised for output-path problems.

    Raises:
        OutputError: ``path`` is a folder, lies under a file, or its folder or the temporary
            file cannot be created (``error``).

    Example:
        >>> with AtomicFile("model.ckpt") as tmp:  # doctest: +SKIP
        ...     torch.save(state, tmp)
    """

    def __init__(self, path: StrPath, *, error: type[QuerysepError] = OutputError) -> None:
        self.path = check_output_file(path, error=error)
        self.error = error
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise error(
                f"cannot write {self.path}: cannot create folder {self.path.parent}: {_reason(exc)}"
            ) from exc
        self.temp = _temp_name(self.path)
        try:
            # O_EXCL reserves the name; mode 0o666 lets the umask set the permissions.
            os.close(os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            self._mode = stat.S_IMODE(os.stat(self.temp).st_mode)
        except OSError as exc:
            raise self._error(exc) from exc
        self._synced = False
        self._done = False

    def _error(self, exc: OSError) -> QuerysepError:
        return self.error(f"cannot write {self.path}: {_reason(exc)}")

    def sync(self) -> None:
        """Flush the temporary file to disk (``os.fsync``); :meth:`commit` does it too.

        Raises:
            OutputError: The flush fails (``error``); the temporary file is kept.
        """
        try:
            fd = os.open(self.temp, os.O_RDWR)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._error(exc) from exc
        self._synced = True

    def commit(self) -> Path:
        """Flush the temporary file and rename it over :attr:`path`.

        Returns:
            :attr:`path`.

        Raises:
            OutputError: The flush or rename fails (``error``); the temporary file is
                removed and :attr:`path` is left as it was.
        """
        if self._done:
            raise RuntimeError(f"the write of {self.path} is already finished")
        try:
            if not self._synced:
                self.sync()
            try:
                # A writer that replaced the reserved file with its own (safetensors writes a
                # 0o600 temporary file and renames it) must not narrow the output's mode.
                if stat.S_IMODE(os.stat(self.temp).st_mode) != self._mode:
                    os.chmod(self.temp, self._mode)
                os.replace(self.temp, self.path)
            except OSError as exc:
                raise self._error(exc) from exc
        except BaseException:
            self.discard()
            raise
        self._done = True
        _sync_folder(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file; :attr:`path` is left as it was. No-op once finished."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self.temp.unlink(missing_ok=True)

    def about_temp(self, exc: BaseException) -> QuerysepError | None:
        """``exc`` restated with :attr:`path` when it is an OSError naming the temporary file."""
        if not isinstance(exc, OSError):
            return None
        names = [exc.filename, exc.filename2]
        names = [os.fspath(n) for n in names if isinstance(n, str | os.PathLike)]
        if os.fspath(self.temp) in names:
            return self._error(exc)
        # A write into the open temporary file fails without a file name (a full disk...).
        return self._error(exc) if not names and exc.errno in _WRITE_ERRNOS else None

    def __enter__(self) -> Path:
        return self.temp

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.commit()
            return
        self.discard()
        restated = self.about_temp(exc)
        if restated is not None:
            raise restated from exc


@contextlib.contextmanager
def atomic_files(*paths: StrPath) -> Iterator[tuple[Path, ...]]:
    """Write several files that are committed together, as far as a file system allows.

    Yields one temporary path per output. When the block ends normally, every temporary
    file is flushed to disk first, and only then are they renamed over their outputs, in
    the order given. So an error or Ctrl-C while writing any of them leaves every output
    as it was; only a crash (power loss, ``kill -9``) between the renames can leave the
    first outputs new and the later ones old. Put last the file whose arrival marks the
    set as complete, and check that the set belongs together when reading it (as model
    folders do with a shared save id).

    Args:
        paths: The output files.

    Yields:
        The temporary paths, in the order of ``paths``.

    Raises:
        OutputError: As :class:`AtomicFile`, for any of the outputs.
    """
    pending: list[AtomicFile] = []
    try:
        for path in paths:
            pending.append(AtomicFile(path))
        try:
            yield tuple(item.temp for item in pending)
        except BaseException as exc:
            for item in pending:
                restated = item.about_temp(exc)
                if restated is not None:
                    raise restated from exc
            raise
        for item in pending:
            item.sync()
        for item in pending:
            item.commit()
    finally:
        for item in pending:
            item.discard()


def write_bytes(path: StrPath, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :class:`AtomicFile`).

    Args:
        path: The output file; its folder is created.
        data: The bytes to write.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: The output cannot be written.
    """
    with AtomicFile(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: StrPath, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :class:`AtomicFile`), newlines untranslated.

    Args:
        path: The output file; its folder is created.
        text: The text to write.
        encoding: Its encoding.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: The output cannot be written, or ``text`` holds what ``encoding``
            cannot encode (a file name that is not valid UTF-8 comes in as surrogates).
    """
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError as exc:
        around = text[max(exc.start - 20, 0) : exc.end + 20]
        raise OutputError(
            f"cannot write {path}: it would hold text that is not valid {encoding} "
            f"({around!a}), e.g. a file name from another encoding: rename that file"
        ) from None
    with AtomicFile(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
    return Path(path)


def remove_stale_temp_files(path: StrPath) -> list[Path]:
    """Delete the temporary files that killed writes of ``path`` left behind.

    Only call this where no other process may be writing ``path`` at the same time (for
    example, a training run about to save its own checkpoints).

    Args:
        path: The output file.

    Returns:
        The files removed.
    """
    p = Path(path)
    stem = _temp_stem(p)
    pattern = re.compile(rf"\.{re.escape(stem)}\.[0-9a-f]{{8}}\.part{re.escape(p.suffix)}")
    removed = []
    with contextlib.suppress(OSError):
        for entry in p.parent.iterdir():
            if pattern.fullmatch(entry.name) and entry.is_file():
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def sha256_file(path: StrPath) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
