"""The page's error lines: what ``querysep separate`` would print, without server paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from querysep.errors import OutputError
from querysep.testing import synth

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


@pytest.mark.parametrize("limit", [0.1, 0.5, 1.0, 1.5, 10.0, 60.0])
def test_the_default_segment_and_overlap_are_valid_under_any_segment_limit(
    tmp_path: Path, limit: float
) -> None:
    from querysep.app import AppConfig, SeparationService, Workspace
    from querysep.app.page import build_page

    ws = Workspace(parent=tmp_path)
    config = AppConfig(
        models=("test-tiny",), clap="test-tiny", max_segment_seconds=limit, examples=None
    )
    service = SeparationService(config, ws)
    try:
        # what the page shows and what an API call that leaves them out gets
        endpoint = build_page(service).get_api_info()["named_endpoints"]["/separate"]
        defaults = {p["parameter_name"]: p["parameter_default"] for p in endpoint["parameters"]}
        segment, overlap = defaults["segment_seconds"], defaults["overlap_seconds"]
        assert segment == min(10.0, limit) and 0 < overlap < segment
        if limit <= 1.0:  # a request with the page's defaults goes through
            mixture = synth.scene(2.0, 16000, seed=3)
            path = synth.write_wav(tmp_path / "mix.wav", mixture, 16000)
            result = service.separate(
                path, "a dog", segment_seconds=segment, overlap_seconds=overlap
            )
            assert len(result.outputs) == 1
    finally:
        ws.close()


def test_the_normalize_checkbox_reaches_the_separator(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    from querysep import Separator
    from querysep.app import AppConfig, SeparationService, Workspace
    from querysep.app.page import build_page

    ws = Workspace(parent=tmp_path)
    config = AppConfig(models=("test-tiny",), clap="test-tiny", examples=None)
    try:
        page = build_page(SeparationService(config, ws))
        endpoint = page.get_api_info()["named_endpoints"]["/separate"]
        defaults = {p["parameter_name"]: p["parameter_default"] for p in endpoint["parameters"]}
        assert defaults["normalize"] is False  # off unless asked for, as in the CLI
        event = next(f for f in page.fns.values() if f.api_name == "separate")
        names = [getattr(block, "elem_id", None) for block in event.inputs]
        checkbox = event.inputs[names.index("normalize")]
        assert type(checkbox).__name__ == "Checkbox" and checkbox.value is False
        x = synth.scene(2.0, 16000, seed=6)
        x = (0.003 * x / np.abs(x).max()).astype(np.float32)
        path = synth.write_wav(tmp_path / "quiet.wav", x, 16000, subtype="FLOAT")
        values = {"recording": str(path), "queries": "rain", "model": "test-tiny"}
        values |= {"segment_seconds": 1.0, "overlap_seconds": 0.5, "device": "cpu"}
        values["normalize"] = True
        args = [values[p["parameter_name"]] for p in endpoint["parameters"]]
        _, files, report = event.fn(*args)  # what the page's button and the API call run
        assert report["normalize"] is True
        got, _ = sf.read(files[0], dtype="float32")
        sep = Separator("test-tiny", segment_seconds=1.0, overlap_seconds=0.5, normalize=True)
        want = sep.separate_tensor(x, 16000, "rain")[0, 0].numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    finally:
        ws.close()
