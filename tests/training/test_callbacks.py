"""LastCheckpoint's atomic saves, with a stand-in trainer (no training needed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from querysep.training.callbacks import LastCheckpoint


class FakeStrategy:
    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def barrier(self, name: str | None = None) -> None:
        pass


def fake_trainer(step: int, payload: bytes | BaseException) -> SimpleNamespace:
    def save_checkpoint(path: Path, weights_only: bool = False) -> None:
        Path(path).write_bytes(b"partial")
        if isinstance(payload, BaseException):
            raise payload
        Path(path).write_bytes(payload)

    return SimpleNamespace(
        global_step=step,
        is_global_zero=True,
        ckpt_path=None,
        strategy=FakeStrategy(),
        save_checkpoint=save_checkpoint,
    )


def test_save_replaces_last_ckpt_only_when_complete(tmp_path: Path) -> None:
    last = LastCheckpoint(tmp_path / "checkpoints", every_n_steps=1, keep_step_checkpoints=True)
    last.save(fake_trainer(1, b"step 1"))
    assert last.path.read_bytes() == b"step 1"
    with pytest.raises(KeyboardInterrupt):
        last.save(fake_trainer(2, KeyboardInterrupt()))
    assert last.path.read_bytes() == b"step 1"
    assert sorted(p.name for p in last.dirpath.iterdir()) == ["last.ckpt", "step-00000001.ckpt"]


def test_train_start_removes_temp_files_of_killed_saves(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".last.ckpt.0123abcd.part.ckpt").write_bytes(b"killed mid-save")
    (folder / "last.ckpt").write_bytes(b"complete")
    last = LastCheckpoint(folder, every_n_steps=1)
    last.on_train_start(fake_trainer(0, b""), None)  # type: ignore[arg-type]
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]
