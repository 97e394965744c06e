"""The app's private folder: removed on close, pruned by age and by size, never under a job."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from querysep.app import Workspace


def _file(path: Path, size: int, age: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age, now - age))
    return path


@pytest.fixture
def ws(tmp_path: Path):
    ws = Workspace(keep_seconds=3600, max_bytes=1000, grace_seconds=60, parent=tmp_path)
    yield ws
    ws.close()


def test_the_folder_is_private_and_close_removes_it(tmp_path: Path) -> None:
    ws = Workspace(parent=tmp_path)
    assert stat.S_IMODE(ws.root.stat().st_mode) == 0o700
    _file(ws.root / "upload" / "a.wav", 10, 0, 0)
    ws.close()
    assert not ws.root.exists()


def test_prune_removes_expired_files_then_the_oldest_over_the_size_limit(ws: Workspace) -> None:
    now = time.time()
    expired = _file(ws.root / "u1" / "old.wav", 10, 4000, now)
    oldest = _file(ws.root / "u2" / "a.wav", 600, 3000, now)
    older = _file(ws.root / "u3" / "b.wav", 600, 2000, now)
    young = _file(ws.root / "u4" / "c.wav", 600, 10, now)  # within the grace period: kept
    ws.max_bytes = 1300
    assert ws.prune(now) == 610  # the expired file, then the oldest: 1200 bytes left
    assert not expired.exists() and not oldest.exists()
    assert older.exists() and young.exists()
    assert expired.parent.exists()  # just emptied: gradio might be about to write there
    assert ws.prune(now + 120) == 0 and not expired.parent.exists()  # later it goes
    ws.max_bytes = 100
    assert ws.prune(now) == 600  # still over, but the last file is within the grace period
    assert not older.exists() and young.exists()


def test_running_jobs_and_pinned_files_are_kept(ws: Workspace) -> None:
    now = 1e9
    example = _file(ws.root / "ex" / "example.wav", 10, 0, now)
    ws.pin_contents()
    upload = _file(ws.root / "u" / "in.wav", 10, 0, now)
    with ws.job(upload) as folder:
        out = _file(folder / "out.wav", 2000, 0, now)
        assert ws.prune(now + 10**6) == 0  # everything expired, but in use
    assert ws.prune(now + 10**6) == 2010
    assert example.exists() and not upload.exists() and not out.exists()


def test_a_failed_job_leaves_nothing(ws: Workspace) -> None:
    with pytest.raises(RuntimeError), ws.job() as folder:
        (folder / "half.wav").write_bytes(b"x")
        raise RuntimeError("boom")
    assert not folder.exists()
