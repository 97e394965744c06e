"""``load_weights_only``: zip and legacy files load; folders, missing files and code do not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from querysep.errors import CheckpointError, ModelNotFoundError
from querysep.safeload import load_weights_only


@pytest.mark.parametrize("zip_format", [True, False])
def test_plain_weights_load(zip_format: bool, tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(
        {"state_dict": {"a": torch.arange(3.0)}}, path, _use_new_zipfile_serialization=zip_format
    )
    torch.testing.assert_close(load_weights_only(path)["state_dict"]["a"], torch.arange(3.0))


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="is a folder"):
        load_weights_only(tmp_path)
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_weights_only(tmp_path / "nope.pt")
    torch.save({"f": print}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match=r"needs pickled code to load \(print\)"):
        load_weights_only(tmp_path / "code.pt")


def test_an_empty_or_truncated_file_is_named_as_such(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        load_weights_only(empty, "AudioSep checkpoint")
    assert str(info.value) == f"cannot read {empty} (AudioSep checkpoint): file is empty (0 bytes)"
    whole = tmp_path / "whole.pt"
    torch.save({"w": torch.ones(1000)}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"^cannot read .*cut.pt as an AudioSep checkpoint: "):
        load_weights_only(cut, "AudioSep checkpoint")


class _RunsACommand:
    """Unpickling this would call os.system (the marker file proves it never runs)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_code_calling_a_blocked_module_and_files_that_are_no_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    torch.save({"w": _RunsACommand(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"needs pickled code to load \(posix.system\)"):
        load_weights_only(tmp_path / "evil.pt")
    assert not marker.exists()
    (tmp_path / "notes.pt").write_text("a text file, not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint of plain weights"):
        load_weights_only(tmp_path / "notes.pt")
