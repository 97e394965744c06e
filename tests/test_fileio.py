"""querysep.fileio: atomic writes, permissions, fsync, clean-up, and output-path errors."""

from __future__ import annotations

import errno
import io
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from querysep.errors import DataError, OutputError
from querysep.fileio import (
    AtomicFile,
    atomic_files,
    check_output_file,
    check_output_folder,
    locked_folder,
    publish_folder,
    remove_stale_temp_files,
    write_bytes,
    write_text,
)


class BoomError(Exception):
    pass


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that changes it."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_permissions_follow_the_umask(tmp_path: Path, mask: int) -> None:
    os.umask(mask)
    written = [
        write_text(tmp_path / "a.txt", "x"),
        write_bytes(tmp_path / "b.bin", b"x"),
        write_text(tmp_path / "a.txt", "replaced"),  # replacing keeps the normal mode too
    ]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def _owner_only_file(path: Path) -> None:
    """Replace ``path`` with a 0o600 file, as safetensors' save_file does with its target."""
    other = path.with_name(path.name + ".other")
    os.close(os.open(other, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.replace(other, path)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_a_writer_that_replaces_the_temp_file_does_not_narrow_the_mode(
    tmp_path: Path, mask: int
) -> None:
    os.umask(mask)
    with AtomicFile(tmp_path / "model.safetensors") as tmp:
        _owner_only_file(tmp)
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == 0o666 & ~mask


@pytest.mark.usefixtures("umask")
def test_published_folder_files_get_the_plain_mode(tmp_path: Path) -> None:
    os.umask(0o022)
    temp = tmp_path / ".out.part"
    (temp / "sub").mkdir(parents=True)
    for name in ("config.json", "sub/model.safetensors"):
        (temp / name).touch()
        _owner_only_file(temp / name)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    folder = publish_folder(temp, tmp_path / "out")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "config.json",
        "sub",
        "sub/model.safetensors",
    ]
    for name in ("config.json", "sub/model.safetensors"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644, name
    assert names(tmp_path) == ["out"]  # no probe file, no old folder left beside it


def test_temp_file_is_hidden_next_to_the_target_with_its_extension(tmp_path: Path) -> None:
    with AtomicFile(tmp_path / "sub" / "fig.png") as tmp:
        assert tmp.parent == tmp_path / "sub"
        assert tmp.name.startswith(".fig.png.") and tmp.name.endswith(".part.png")
        tmp.write_bytes(b"png")
        assert not (tmp_path / "sub" / "fig.png").exists()
    assert names(tmp_path / "sub") == ["fig.png"]


@pytest.mark.parametrize("exc", [BoomError("disk on fire"), KeyboardInterrupt()])
def test_exception_leaves_the_target_untouched_and_no_temp_file(
    tmp_path: Path, exc: BaseException
) -> None:
    target = write_text(tmp_path / "m.jsonl", "old\n")
    with pytest.raises(type(exc)), AtomicFile(target) as tmp:
        tmp.write_text("half of the new")
        raise exc
    assert target.read_text() == "old\n"
    assert names(tmp_path) == ["m.jsonl"]


def test_failed_first_write_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(BoomError), AtomicFile(tmp_path / "new.csv"):
        raise BoomError
    assert names(tmp_path) == []


def test_fsync_runs_on_the_complete_temp_file_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = write_text(tmp_path / "t.json", "old")
    synced: list[tuple[int, bool]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((os.fstat(fd).st_ino, target.read_text() == "old"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with AtomicFile(target) as tmp:
        tmp.write_text("new")
        inode = tmp.stat().st_ino
    assert synced[0] == (inode, True)  # the temp file, while the target was still the old one
    assert target.read_text() == "new" and target.stat().st_ino == inode


def test_failed_fsync_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = write_text(tmp_path / "t.txt", "old")

    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OutputError, match=r"cannot write .*t\.txt: Input/output error"):
        write_text(target, "new")
    assert target.read_text() == "old" and names(tmp_path) == ["t.txt"]


def test_os_error_about_the_temp_file_names_the_output(tmp_path: Path) -> None:
    target = tmp_path / "ckpt" / "last.ckpt"
    with pytest.raises(OutputError) as info, AtomicFile(target) as tmp:
        raise OSError(28, "No space left on device", str(tmp))
    assert str(info.value) == f"cannot write {target}: No space left on device"
    assert ".part" not in str(info.value)
    assert names(target.parent) == []


def test_a_full_disk_while_writing_names_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write into an open file fails with an OSError that names no file (ENOSPC)."""
    target = write_text(tmp_path / "summary.json", "old")

    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = open
    monkeypatch.setattr(
        "builtins.open",
        lambda f, mode="r", *a, **k: FullDisk() if "w" in mode else real_open(f, mode, *a, **k),
    )
    with pytest.raises(OutputError) as info:
        write_text(target, "new")
    monkeypatch.undo()
    assert str(info.value) == f"cannot write {target}: No space left on device"
    assert target.read_text() == "old" and names(tmp_path) == ["summary.json"]
    with pytest.raises(OSError, match="unrelated"), AtomicFile(target):  # other errors pass
        raise OSError(errno.EACCES, "unrelated")


def test_output_under_a_file_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    blocker = write_text(tmp_path / "FILE", "x")
    for target in (blocker / "m.jsonl", blocker / "deeper" / "x.csv"):
        with pytest.raises(OutputError) as info:
            write_text(target, "data")
        assert str(info.value) == f"cannot write {target}: {blocker} is a file, not a folder"
    with pytest.raises(OutputError, match="it is a folder"):
        write_text(tmp_path, "data")
    with pytest.raises(DataError, match="is a file, not a folder"):
        check_output_file(blocker / "a.wav", error=DataError)
    assert names(tmp_path) == ["FILE"] and blocker.read_text() == "x"


def test_output_folders(tmp_path: Path) -> None:
    blocker = write_text(tmp_path / "FILE", "x")
    for folder in (blocker, blocker / "sub"):
        with pytest.raises(OutputError) as info:
            check_output_folder(folder, create=True)
        assert str(info.value) == f"cannot write to {folder}: {blocker} is a file, not a folder"
    assert check_output_folder(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert check_output_folder(tmp_path / "new" / "run", create=True).is_dir()


def test_broken_link_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    with pytest.raises(OutputError, match="link is a broken link"):
        write_text(tmp_path / "link" / "a.txt", "x")


def test_files_of_a_group_are_replaced_only_once_all_are_written(tmp_path: Path) -> None:
    first, second = (
        write_text(tmp_path / "a.bin", "old a"),
        write_text(tmp_path / "b.json", "old b"),
    )
    with pytest.raises(BoomError), atomic_files(first, second) as (tmp_a, tmp_b):
        tmp_a.write_text("new a")
        tmp_b.write_text("half")
        raise BoomError
    assert (first.read_text(), second.read_text()) == ("old a", "old b")
    assert names(tmp_path) == ["a.bin", "b.json"]
    with atomic_files(first, second) as (tmp_a, tmp_b):
        tmp_a.write_text("new a")
        tmp_b.write_text("new b")
    assert (first.read_text(), second.read_text()) == ("new a", "new b")
    assert names(tmp_path) == ["a.bin", "b.json"]


def test_group_refuses_before_writing_when_one_output_is_under_a_file(tmp_path: Path) -> None:
    blocker = write_text(tmp_path / "FILE", "x")
    with (
        pytest.raises(OutputError, match="FILE is a file"),
        atomic_files(tmp_path / "ok.txt", blocker / "b.txt"),
    ):
        pytest.fail("the block must not run")
    assert names(tmp_path) == ["FILE"]


def test_remove_stale_temp_files_only_touches_the_outputs_own(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    stale = [tmp_path / ".last.ckpt.0123abcd.part.ckpt", tmp_path / ".last.ckpt.ffffffff.part.ckpt"]
    keep = [tmp_path / ".best.ckpt.0123abcd.part.ckpt", tmp_path / "last.ckpt", tmp_path / "x"]
    for p in stale + keep:
        p.write_bytes(b"")
    assert sorted(remove_stale_temp_files(target)) == sorted(stale)
    assert names(tmp_path) == sorted(p.name for p in keep)
    assert remove_stale_temp_files(tmp_path / "missing" / "a.txt") == []


def test_commit_twice_is_a_bug(tmp_path: Path) -> None:
    pending = AtomicFile(tmp_path / "a.txt")
    pending.commit()
    with pytest.raises(RuntimeError, match="already finished"):
        pending.commit()
    pending.discard()  # no-op once committed
    assert names(tmp_path) == ["a.txt"]


def test_an_output_in_a_folder_that_cannot_be_written_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found when the output is checked (before slow work), not when the write fails."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        "os.access", lambda p, mode: False if Path(p) == locked else real_access(p, mode)
    )
    for target in (locked / "out.csv", locked / "new" / "deeper" / "out.csv"):
        with pytest.raises(OutputError, match=rf"cannot write .*: {locked} is not writable"):
            check_output_file(target)
    assert check_output_file(tmp_path / "free" / "out.csv") == tmp_path / "free" / "out.csv"


# ----------------------------------------------------------------------- locked folders

_HOLD = """
import sys, time
from querysep.fileio import locked_folder
with locked_folder(sys.argv[1], "evaluate"):
    print("held", flush=True)
    time.sleep(60)
"""


def _hold_in_another_process(folder: Path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_folder_held_by_another_process_is_refused_until_it_ends(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "out"
    proc = _hold_in_another_process(folder)
    try:
        with (
            pytest.raises(OutputError, match=r"out is in use by another running querysep train"),
            locked_folder(folder, "train"),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()
    with locked_folder(folder, "train") as held:  # a killed holder leaves it free
        assert held == folder
    assert list(folder.iterdir()) == []  # no lock file left behind


def test_a_second_hold_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with (
        locked_folder(tmp_path, "evaluate"),
        pytest.raises(OutputError, match="in use by another running querysep evaluate"),
        locked_folder(tmp_path, "evaluate"),
    ):
        pass
    with locked_folder(tmp_path, "evaluate"):  # released on leaving the block
        pass


def test_a_failure_in_a_created_folder_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(BoomError), locked_folder(tmp_path / "a" / "b", "evaluate"):
        raise BoomError("boom")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(BoomError), locked_folder(tmp_path / "kept", "evaluate"):
        raise BoomError("boom")
    assert (tmp_path / "kept").is_dir()  # it was there before


def test_a_folder_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"), locked_folder(tmp_path / "f" / "o", "x"):
        pass


_HOLD_AND_FORK = """
import os, sys, time
from querysep.fileio import locked_folder
with locked_folder(sys.argv[1], "training"):
    child = os.fork()
    if child == 0:  # a child (a DataLoader worker) outlives its parent
        # past the fork, its hooks have run; one write each, so that the two lines never
        # interleave (print writes piece by piece under PYTHONUNBUFFERED)
        os.write(1, f"child {os.getpid()}\\n".encode())
        time.sleep(60)
        os._exit(0)
    os.write(1, f"held {child}\\n".encode())
    os._exit(0)  # killed: no cleanup runs
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_lock_ends_with_the_process_that_took_it_not_its_children(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_AND_FORK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    said = dict(proc.stdout.readline().split() for _ in range(2))
    child = said["child"]
    try:
        assert said["held"] == child
        proc.wait(timeout=30)
        os.kill(int(child), 0)  # the child still runs...
        with locked_folder(tmp_path, "training"):  # ...and the lock is free
            pass
    finally:
        os.kill(int(child), signal.SIGKILL)


def test_a_name_of_the_longest_legal_length_can_be_written(tmp_path: Path) -> None:
    """The temporary file's name (``.<name>.<random>.part<ext>``) cuts a long ``<name>``, so
    every name the file system takes (255 bytes) can be written, and still be cleaned up."""
    import numpy as np

    from querysep.audio import load_audio, save_audio

    name = "é" * 100 + "n" * 51 + ".wav"  # 255 bytes in UTF-8
    assert len(name.encode()) == 255
    assert write_bytes(tmp_path / name, b"data").read_bytes() == b"data"
    save_audio(tmp_path / name, np.full(100, 0.5, np.float32), 16000)
    assert load_audio(tmp_path / name)[0].shape == (1, 100)
    assert names(tmp_path) == [name]
    pending = AtomicFile(tmp_path / name)  # a killed write leaves its temporary file behind
    assert len(pending.temp.name.encode()) <= 255 and pending.temp.name.endswith(".part.wav")
    assert remove_stale_temp_files(tmp_path / name) == [pending.temp]
    assert names(tmp_path) == [name]
    # two long names that share the part a temporary name keeps: each cleans up its own
    dog, cat = ("x" * 240 + "_dog.wav"), ("x" * 240 + "_cat.wav")
    dog_temp, cat_temp = AtomicFile(tmp_path / dog).temp, AtomicFile(tmp_path / cat).temp
    dog_temp.write_bytes(b"d")
    cat_temp.write_bytes(b"c")
    assert remove_stale_temp_files(tmp_path / dog) == [dog_temp]  # was: cat's too
    assert cat_temp.exists()


def test_text_with_an_undecodable_file_name_is_refused_in_one_line(tmp_path: Path) -> None:
    """A file name that is not UTF-8 reaches Python as surrogates (b'\\xff' -> '\\udcff'):
    writing it into a CSV raised UnicodeEncodeError; now an OutputError that says so, and
    nothing is written."""
    name = os.fsdecode(b"bad\xffname.wav")
    with pytest.raises(OutputError, match=r"not valid utf-8 \('audio\\nbad\\udcffname") as err:
        write_text(tmp_path / "out.csv", f"audio\n{name}\n")
    assert "\n" not in str(err.value) and "rename that file" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    write_text(tmp_path / "out.csv", "audio\r\nok.wav\n")  # newlines kept as given
    assert (tmp_path / "out.csv").read_bytes() == b"audio\r\nok.wav\n"
