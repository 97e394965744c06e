"""The page's error lines: what ``querysep separate`` would print, without server paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from querysep.errors import OutputError

pytest.importorskip("gradio", reason="the app extra (gradio) is not installed")


def test_an_error_names_files_not_the_servers_folders(tmp_path: Path) -> None:
    from querysep.app.page import _fail

    workspace = tmp_path / "querysep-app-k2x"
    upload = tmp_path / "gradio" / "9f3e" / "my take.wav"
    exc = OutputError(
        f"cannot write {workspace}/jobs/0123abcd/my take__dog.wav (from {upload}): disk full"
    )
    error = _fail(exc, str(upload), workspace)
    assert error.message == "cannot write my take__dog.wav (from my take.wav): disk full"
    assert str(tmp_path) not in error.message
